"""A labelled Twemoji: the 64 px emoji sorted into class folders by their Unicode names.

    python benchmarks/twemoji_classes.py ../shared/data/twemoji-64/twemoji-64.tar runs/tw-classes
    gantool train --preset colour-small --data runs/tw-classes --conditional ...

Twemoji ships no labels; this derives five from each file's code points (``1f469-1f3fb.png``):
``flag`` (regional indicators, tag flags), ``people`` (a skin-tone modifier, or a name with MAN,
WOMAN, PERSON, HAND, ...), ``face`` (FACE in the name), ``nature`` (animal and plant names) and
``object`` (the rest). Written as one sub-folder per class (the ImageFolder layout gantool reads
with ``--conditional``), the images byte for byte. Prints the class sizes.
"""

from __future__ import annotations

import argparse
import collections
import tarfile
import unicodedata
from pathlib import Path

PEOPLE = ("MAN", "WOMAN", "PERSON", "BOY", "GIRL", "BABY", "ADULT", "CHILD", "FAMILY", "HAND",
          "FINGER")
NATURE = ("CAT", "DOG", "BIRD", "FISH", "FLOWER", "TREE", "LEAF", "ANIMAL", "MONKEY", "HORSE",
          "BEAR", "BUG", "SNAKE", "COW", "PIG", "TIGER", "LION", "WHALE", "DOLPHIN", "BLOSSOM",
          "PLANT", "MUSHROOM", "FROG", "RABBIT", "MOUSE", "RAT", "CHICKEN", "DUCK", "OWL",
          "EAGLE", "PENGUIN", "TURTLE", "LIZARD", "DRAGON", "SPIDER", "BEE", "BUTTERFLY",
          "SNAIL", "CRAB", "SHRIMP", "SQUID", "OCTOPUS", "ELEPHANT", "CAMEL", "GIRAFFE",
          "ZEBRA", "DEER", "SHEEP", "GOAT", "BAT", "WOLF", "FOX", "RACCOON", "KOALA", "PANDA",
          "SLOTH", "OTTER", "SKUNK", "KANGAROO", "BADGER", "HEDGEHOG", "CACTUS", "PALM",
          "SEEDLING", "HERB", "SHAMROCK", "CLOVER", "MAPLE", "TULIP", "ROSE", "HIBISCUS",
          "SUNFLOWER")


def category(file_name: str) -> str:
    """The class of one Twemoji file, from the code points in its name."""
    points = [int(p, 16) for p in Path(file_name).stem.split("-")]
    if any(0x1F1E6 <= p <= 0x1F1FF for p in points) or points[0] == 0x1F3F4:
        return "flag"
    name = " ".join(unicodedata.name(chr(p), "") for p in points)
    if any(0x1F3FB <= p <= 0x1F3FF for p in points) or any(w in name for w in PEOPLE):
        return "people"
    if "FACE" in name:
        return "face"
    if any(w in name for w in NATURE):
        return "nature"
    return "object"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tar", type=Path, help="twemoji-64.tar")
    p.add_argument("out", type=Path, help="folder to write class sub-folders into")
    args = p.parse_args()
    sizes: collections.Counter = collections.Counter()
    with tarfile.open(args.tar) as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".png")):
                continue
            cls = category(member.name)
            target = args.out / cls / Path(member.name).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            sizes[cls] += 1
    print(", ".join(f"{k} {v}" for k, v in sorted(sizes.items())))


if __name__ == "__main__":
    main()
