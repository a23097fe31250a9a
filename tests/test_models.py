"""DCGAN generator and discriminator at every supported resolution."""

import pytest
import torch
from torch import nn

from gantool.config import ModelConfig
from gantool.errors import ConfigError
from gantool.models import build_discriminator, build_generator, supported_resolutions
from gantool.models.layers import fold_batchnorm, resolution_plan

LISTED = [28, 32, 64, 96, 128, 192, 256, 512, 1024]


@pytest.mark.parametrize("res", LISTED)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("arch,d_arch", [("dcgan", "dcgan"), ("residual", "pooled")])
def test_shapes_at_listed_resolutions(res, channels, arch, d_arch):
    cfg = ModelConfig(resolution=res, channels=channels, nz=16, ngf=2, ndf=2, max_channels=16,
                      arch=arch, d_arch=d_arch, res_blocks=2)
    g, d = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    with torch.no_grad():
        x = g(torch.randn(2, 16))
        logits = d(x)
    assert x.shape == (2, channels, res, res)
    assert x.abs().max() <= 1.0
    assert logits.shape == (2,)


def test_every_supported_resolution_builds():
    for res in supported_resolutions():
        base, k = resolution_plan(res)
        assert base * 2**k == res and k >= 2
    assert set(LISTED) <= set(supported_resolutions())


@pytest.mark.parametrize("bad,near", [(100, "80, 96, 112"), (20, "28, 32, 40"), (2048, "1024"),
                                      (36, "32")])
def test_unsupported_resolution_names_nearest(bad, near):
    with pytest.raises(ConfigError, match=f"unsupported resolution {bad}.*nearest: .*{near}"):
        build_generator(ModelConfig(resolution=bad))


def test_radford_constraints_and_init():
    cfg = ModelConfig(resolution=64, ngf=32, ndf=32)
    g, d = build_generator(cfg), build_discriminator(cfg)
    kinds = {type(m) for m in list(g.modules()) + list(d.modules())}
    assert not kinds & {nn.MaxPool2d, nn.AvgPool2d, nn.Linear}, "strided convolutions only"
    assert isinstance(list(g.modules())[-1], nn.Tanh)
    relus = [m for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    assert relus and all(m.negative_slope == 0.2 for m in relus)
    convs = [m.weight for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    w = torch.cat([c.flatten() for c in convs])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002


def test_channel_cap():
    g = build_generator(ModelConfig(resolution=1024, ngf=64, max_channels=128, nz=8))
    widths = [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert max(widths) == 128 and widths[-1] == 3


def test_discriminator_dropout():
    d = build_discriminator(ModelConfig(resolution=28, channels=1, ndf=8, d_dropout=0.4))
    drops = [m for m in d.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(m.p == 0.4 for m in drops)
    x = torch.randn(4, 1, 28, 28)
    assert not torch.equal(d.train()(x), d(x))  # active while training
    assert torch.equal(d.eval()(x), d(x))
    assert not any(isinstance(m, nn.Dropout)
                   for m in build_discriminator(ModelConfig(resolution=28, ndf=8)).modules())


def test_minibatch_stddev_makes_d_see_the_batch():
    x = torch.randn(4, 1, 28, 28)
    y = x.clone()
    y[1:] = torch.randn(3, 1, 28, 28) * 3  # same first image, a more varied rest of the batch
    for mbstd, depends in [(False, False), (True, True)]:
        torch.manual_seed(0)
        d = build_discriminator(ModelConfig(resolution=28, channels=1, ndf=8, d_mbstd=mbstd))
        d.eval()
        with torch.no_grad():
            assert (d(x)[0] != d(y)[0]).item() == depends


def test_spectral_norm_bounds_every_convolution():
    torch.manual_seed(0)
    d = build_discriminator(ModelConfig(resolution=28, channels=1, ndf=8, d_spectral_norm=True))
    for _ in range(30):  # power iteration converges over forward passes in train mode
        d(torch.randn(4, 1, 28, 28))
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    for m in convs:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.05)
    plain = build_discriminator(ModelConfig(resolution=28, channels=1, ndf=8))
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


def test_residual_generator_follows_xin():
    """5 down layers (3 at 4*base, 2 halving), 9 residual blocks, every block after the first
    fed the first block's output, k up layers and tanh."""
    from gantool.models.residual import ResidualGenerator

    g = build_generator(ModelConfig(resolution=96, arch="residual", nz=8, ngf=4))
    assert isinstance(g, ResidualGenerator) and len(g.blocks) == 9
    downs = [m for m in g.down if isinstance(m, nn.Conv2d)]
    assert [m.stride[0] for m in downs] == [1, 1, 1, 2, 2]
    assert len([m for m in g.up if isinstance(m, nn.ConvTranspose2d)]) == 5  # 3 -> 96 px
    assert isinstance(g.up[-1], nn.Tanh)
    seen = {}
    for i, block in enumerate(g.blocks):
        block.register_forward_hook(lambda m, args, out, i=i: seen.update({i: (args[0], out)}))
    g.eval()
    with torch.no_grad():
        g(torch.randn(3, 8))
    first_out = seen[0][1]
    assert seen[0][0].shape == (3, 16, 3, 3)  # 4*ngf channels at base 3
    for i in range(1, 9):
        assert torch.equal(seen[i][0], seen[i - 1][1] + first_out)


def test_pooled_discriminator_averages_a_spatial_map():
    d = build_discriminator(ModelConfig(resolution=64, ndf=4, d_arch="pooled")).eval()
    convs = [m for m in d.main if isinstance(m, nn.Conv2d)]
    repeat, head = convs[-2], convs[-1]
    assert repeat.stride == (1, 1) and repeat.in_channels == repeat.out_channels
    assert head.kernel_size == (1, 1) and head.out_channels == 1
    maps = []
    head.register_forward_hook(lambda m, a, out: maps.append(out))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = d(x)
    assert maps[0].shape == (2, 1, 4, 4)
    assert torch.allclose(logits, maps[0].mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("arch", ["dcgan", "residual"])
def test_folding_batchnorm_keeps_the_images(arch):
    """Inference folds each BatchNorm into its (transposed) convolution: exact in eval mode."""
    import copy

    torch.manual_seed(0)
    g = build_generator(ModelConfig(resolution=64, channels=3, ngf=16, arch=arch))
    for m in g.modules():  # statistics far from the identity, as training leaves them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 3)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-0.5, 0.5)
    g.eval()
    folded = fold_batchnorm(copy.deepcopy(g))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(copy.deepcopy(g).train())
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert left == (0 if arch == "dcgan" else 1), "only the BatchNorm after a Linear stays"
    z = torch.randn(8, 100)
    with torch.no_grad():
        a, b = g(z), folded(z)
    assert (a - b).abs().max() < 1e-5 and a.std() > 0.05
