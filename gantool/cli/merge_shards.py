"""`gantool merge-shards`: check the shards of a render and write one index."""

from __future__ import annotations

from pathlib import Path

import typer


def merge_shards(
    out: Path = typer.Argument(..., help="The --out folder of a sharded render."),
) -> None:
    """Check a sharded render's shards and write its one index, OUT/manifest.jsonl.

    Every shard must be there, each seed of each rendered once, all with the same settings.

    The index lists every seed once, in seed-list order, with its file's path under OUT.

    Examples:

      gantool generate best.pt --seeds 0-99999 --out renders/ --shard 0/2

      gantool generate best.pt --seeds 0-99999 --out renders/ --shard 1/2

      gantool merge-shards renders/
    """
    from gantool.sampling.shards import merge

    done = merge(out)
    typer.echo(f"{out}: {done['shards']} shard(s), {done['images']:,} image(s) listed in "
               f"{done['index']}")
