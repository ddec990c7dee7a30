import pytest
import torch
from omegaconf import OmegaConf

from sepgan.audio import FrontEnd
from sepgan.training.config import compose_config
from sepgan.models import Separator, UNet, load_separator, save_separator
from tests.conftest import wake_temporal


def preset(name: str) -> dict:
    """The U-Net and head settings of a model config, as Hydra would pass them."""
    cfg = OmegaConf.to_container(compose_config([f"model={name}"]).model)
    cfg.pop("_target_")
    return cfg


@pytest.mark.parametrize("name", ["model_a", "model_b"])
@pytest.mark.parametrize("representation", ["complex", "magnitude"])
@pytest.mark.parametrize("length", [8000, 8001, 12345])
def test_presets_keep_the_signal_shape(name, representation, length):
    fe = FrontEnd(8000, 300, 75, representation=representation)
    model = Separator(fe, **preset(name)).eval()
    mixture = torch.randn(2, length) * 0.1
    sep = model(mixture)
    assert sep.speech.shape == mixture.shape
    assert sep.speech_features.shape == (2, fe.channels, fe.n_freq, fe.n_frames(length))
    torch.testing.assert_close(sep.speech + sep.noise, mixture)


def test_model_b_is_smaller_than_model_a_and_predicts_noise():
    fe = FrontEnd()
    a, b = Separator(fe, **preset("model_a")), Separator(fe, **preset("model_b"))
    assert sum(p.numel() for p in b.parameters()) < sum(p.numel() for p in a.parameters())
    assert b.target == "noise" and not any(isinstance(m, torch.nn.BatchNorm2d) for m in b.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in a.modules())


@pytest.mark.parametrize("block", ["dense", "tfc", "tfc_tdf", "conv"])
@pytest.mark.parametrize("n_blocks", [7, 9, 17])
def test_every_block_and_depth_builds_and_runs(block, n_blocks):
    net = UNet(2, 2, n_freq=129, block=block, n_blocks=n_blocks, channels=2, layers=2).eval()
    x = torch.randn(1, 2, 129, 37)
    assert net(x).shape == x.shape
    assert net.levels == (n_blocks - 1) // 2


def test_masks_are_bounded_by_the_mixture():
    fe = FrontEnd(8000, 300, 75, representation="magnitude")
    model = Separator(fe, unet=dict(n_blocks=3, channels=4), output="mask").eval()
    sep = model(torch.randn(1, 8000))
    assert torch.all(sep.speech_features <= sep.mixture_features + 1e-6)
    fe_c = FrontEnd(8000, 300, 75)
    model_c = Separator(fe_c, unet=dict(n_blocks=3, channels=4), output="mask").eval()
    sep_c = model_c(torch.randn(1, 8000))
    mag = lambda f: f.pow(2).sum(1).sqrt()  # noqa: E731
    assert torch.all(mag(sep_c.speech_features) <= mag(sep_c.mixture_features) + 1e-5)


def test_output_follows_input_level():
    torch.manual_seed(0)
    model = Separator(FrontEnd(8000, 300, 75), unet=dict(n_blocks=3, channels=4)).eval()
    x = torch.randn(1, 8000) * 0.1
    torch.testing.assert_close(model.separate(x * 100), model.separate(x) * 100, rtol=1e-3, atol=1e-4)
    assert torch.all(model.separate(torch.zeros(8000)) == 0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(unet=dict(block="lstm")), "block"),
    (dict(unet=dict(n_blocks=8)), "n_blocks"),
    (dict(unet=dict(frame_stack=0)), "frame_stack"),
    (dict(unet=dict(frame_stack=1.5)), "frame_stack"),
    (dict(unet=dict(frame_stack=2, stack_level=2)), "stack_level"),
    (dict(unet=dict(top_block="light")), "top_block"),
    (dict(target="music"), "target"),
    (dict(output="gate"), "output"),
    (dict(unet=dict(norm="group")), "norm"),
])
def test_bad_model_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Separator(FrontEnd(), **kwargs)


def test_checkpoint_round_trip(tmp_path):
    model = Separator(FrontEnd(8000, 300, 75, representation="magnitude", window="sine"),
                      unet=dict(n_blocks=3, channels=4))
    save_separator(model, tmp_path / "m.ckpt")
    loaded = load_separator(str(tmp_path / "m.ckpt"))
    assert loaded.frontend == model.frontend
    x = torch.randn(8000)
    torch.testing.assert_close(loaded.separate(x), model.separate(x))
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a sepgan checkpoint"):
        load_separator(str(tmp_path / "other.ckpt"))
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        load_separator(str(tmp_path / "nothing.ckpt"))


def test_checkpoints_from_before_the_window_option_load_as_hann_and_a_changed_front_end_is_named(tmp_path):
    from sepgan.models.checkpoints import front_end_changes

    model = Separator(FrontEnd(8000, 300, 75), unet=dict(n_blocks=3, channels=4))
    save_separator(model, tmp_path / "m.ckpt")
    checkpoint = torch.load(tmp_path / "m.ckpt", weights_only=False)
    del checkpoint["separator_config"]["frontend"]["window"]  # as written before the option existed
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert load_separator(str(tmp_path / "old.ckpt")).frontend.window == "hann"
    assert front_end_changes(model, tmp_path / "old.ckpt") == []
    sine = Separator(FrontEnd(8000, 300, 75, window="sine"), unet=dict(n_blocks=3, channels=4))
    assert front_end_changes(sine, tmp_path / "old.ckpt") == ["frontend.window: hann -> sine"]


def test_a_given_offset_and_scale_replace_the_mixture_mean_and_level():
    torch.manual_seed(0)
    model = Separator(FrontEnd(8000, 300, 75), unet=dict(n_blocks=3, channels=4)).eval()
    x = torch.randn(8000) * 0.1 + 0.05
    mean = x.mean()
    level = (x - mean).pow(2).mean().sqrt()
    torch.testing.assert_close(model.separate(x, scale=level, offset=mean), model.separate(x), rtol=1e-4, atol=1e-6)
    half = model.separate(x[:4000], scale=level, offset=mean)  # a chunk treated as the whole signal is
    assert not torch.allclose(half, model.separate(x[:4000]))


def test_a_dc_offset_goes_to_the_noise_not_the_speech():
    torch.manual_seed(0)
    model = Separator(FrontEnd(8000, 256, 64), unet=dict(n_blocks=3, channels=4)).eval()
    x = torch.randn(8000) * 0.1
    shifted = model(torch.stack([x, x + 0.3]))  # an offset three times the signal's RMS
    torch.testing.assert_close(shifted.speech[1], shifted.speech[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(shifted.noise[1] - shifted.noise[0], torch.full_like(x, 0.3), rtol=0, atol=1e-5)


def test_dilated_bottleneck_keeps_shapes_and_adds_its_known_reach():
    from sepgan.inference.backends import receptive_field

    fe = FrontEnd(8000, 256, 64)
    # Wide enough that no ReLU is dead for the whole measuring input (2 channels can hide reach from it).
    unet = dict(n_blocks=5, block="tfc_tdf", channels=4, channel_mult=2, layers=1)
    torch.manual_seed(0)  # a seed whose random U-Net has no level silenced by dead ReLUs
    plain = Separator(fe, unet=unet).eval()
    dilated = Separator(fe, unet=dict(unet, bottleneck="dilated", dilations=[1, 2, 4])).eval()
    # Its convolutions start at zero: with the plain U-Net's weights it is that U-Net, reach included.
    missing, unexpected = dilated.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".temporal." in key for key in missing)
    mixture = torch.randn(1, 8000) * 0.1
    torch.testing.assert_close(dilated.separate(mixture), plain.separate(mixture))
    assert receptive_field(dilated) == receptive_field(plain)
    wake_temporal(dilated)
    for length in (8000, 12345):
        mixture = torch.randn(2, length) * 0.1
        assert dilated(mixture).speech.shape == mixture.shape
    # Kernel 3 with dilations 1, 2, 4 adds 1 + 2 + 4 bottleneck frames each side, 2**levels frames each.
    assert receptive_field(dilated) - receptive_field(plain) == 7 * dilated.net.factor


def test_dilated_preset_trains_a_step():
    from sepgan.losses import SeparationLoss

    torch.manual_seed(0)
    cfg = preset("small_dilated")
    assert cfg["unet"]["bottleneck"] == "dilated" and cfg["unet"]["n_blocks"] == 9
    cfg["unet"].update(channels=2, layers=1)
    fe = FrontEnd(8000, 256, 64)
    model = Separator(fe, **cfg).train()
    speech, noise = torch.randn(2, 8000) * 0.1, torch.randn(2, 8000) * 0.1
    loss = SeparationLoss(dict(si_sdr=1.0, mrstft=3.0))
    convs = [layer[-1].weight for layer in model.net.temporal.layers]  # zero at first, so they learn first
    before = [w.detach().clone() for w in convs]
    total, _ = loss(model(speech + noise), speech, noise, fe)
    total.backward()
    torch.optim.Adam(model.parameters(), lr=1e-3).step()
    assert torch.isfinite(total)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(not torch.equal(b, w) for b, w in zip(before, convs))


@pytest.mark.parametrize("unet, message", [
    (dict(bottleneck="gru"), "bottleneck"),
    (dict(bottleneck="dilated", dilations=[1, 0]), "dilations"),
    (dict(bottleneck="dilated", temporal_kernel=2), "temporal_kernel"),
])
def test_bad_bottleneck_settings_are_named(unet, message):
    with pytest.raises(ValueError, match=message):
        Separator(FrontEnd(), unet=unet)


def test_transfer_weights_fills_what_fits_and_refuses_other_shapes(tmp_path):
    from sepgan.models import transfer_weights
    from tests.conftest import save_checkpoint, tiny_separator

    source = save_checkpoint(tiny_separator(), tmp_path / "v1.ckpt")
    longer_hop = tiny_separator("frontend.hop_length=256", "model.unet.bottleneck=dilated")
    copied, fresh = transfer_weights(longer_hop, source)
    assert fresh and all(".temporal." in name for name in fresh)  # only the added block starts fresh
    state = torch.load(source, weights_only=True)["state_dict"]
    assert all(torch.equal(longer_hop.state_dict()[name], state[f"separator.{name}"]) for name in copied)
    assert longer_hop.frontend.hop_length == 256  # the model keeps its own configuration
    with pytest.raises(ValueError, match="weights of another shape"):  # deeper levels narrower: not a growth
        transfer_weights(tiny_separator("model.unet.channels=3", "model.unet.channel_mult=1"), source)


def test_wider_tdf_layers_start_as_the_narrower_model(tmp_path):
    from sepgan.models import transfer_weights
    from tests.conftest import save_checkpoint, tiny_separator

    narrow = tiny_separator()
    source = save_checkpoint(narrow, tmp_path / "narrow.ckpt")
    wide = tiny_separator("model.unet.bn_factor=4", seed=5)
    fc1, fc2 = wide.net.encoders[0].tdf.fc1.weight, wide.net.encoders[0].tdf.fc2.weight
    assert fc1.shape[0] > narrow.net.encoders[0].tdf.fc1.weight.shape[0]
    copied, fresh = transfer_weights(wide, source)
    assert not fresh
    x = torch.randn(8000) * 0.1
    torch.testing.assert_close(wide.separate(x), narrow.separate(x))
    units = narrow.net.encoders[0].tdf.fc1.weight.shape[0]
    copies = fc1[units:2 * units]
    assert fc2[:, units:].abs().sum() == 0  # the new units are not heard yet
    assert 0 < (copies - fc1[:units]).norm() < 0.2 * fc1[:units].norm()  # near copies, each its own
    assert not torch.equal(fc1[2 * units:3 * units], copies)
    with torch.no_grad():  # in training the batch norm pools over the units: their copies keep its statistics
        trained = [model.train()(x[None]).speech for model in (wide, narrow)]
    torch.testing.assert_close(*trained, rtol=0, atol=0.005 * trained[1].abs().max().item())  # fresh units: 0.016


@pytest.mark.parametrize("block", ["tfc_tdf", "tfc", "dense", "conv"])
def test_a_wider_unet_starts_as_the_narrower_model_and_trains_its_new_channels(tmp_path, block):
    from sepgan.models import transfer_weights
    from tests.conftest import TINY_DILATED, save_checkpoint, tiny_separator

    settings = (*TINY_DILATED, f"model.unet.block={block}", "model.unet.layers=2")
    narrow = tiny_separator(*settings, seed=1)
    source = save_checkpoint(narrow, tmp_path / "narrow.ckpt")
    wide = tiny_separator(*settings, "model.unet.channels=3", seed=5)
    assert (wide.net.first.out_channels, wide.net.downs[-1][0].out_channels) == (3, 48)  # 2 and 32 before
    copied, fresh = transfer_weights(wide, source)
    assert not fresh
    x = torch.randn(8000) * 0.1
    torch.testing.assert_close(wide.separate(x), narrow.separate(x))  # skips, dense groups and bottleneck in place
    trained = [model.train()(x[None]).speech for model in (wide, narrow)]
    torch.testing.assert_close(trained[0], trained[1].detach())  # batch norm is per channel: training too
    assert wide.net.last.weight[:, 2:].abs().sum() == 0  # the new channels are not heard yet ...
    trained[0].square().mean().backward()
    assert wide.net.last.weight.grad[:, 2:].abs().sum() > 0  # ... but learn to be from the first step


def test_growth_combines_with_a_deep_filter_and_refuses_what_is_not_growth(tmp_path):
    from sepgan.models import transfer_weights
    from tests.conftest import save_checkpoint, tiny_separator

    narrow = tiny_separator()
    source = save_checkpoint(narrow, tmp_path / "narrow.ckpt")
    x = torch.randn(8000) * 0.1
    for grown in (("model.mask_frames=3", "model.unet.channels=3"),  # a wider U-Net with a 3-frame head
                  ("model.unet.channels=3", "model.unet.channel_mult=3")):  # deeper levels grow faster
        wide = tiny_separator(*grown, seed=5)
        transfer_weights(wide, source)
        torch.testing.assert_close(wide.separate(x), narrow.separate(x))
    for other in (("model.unet.channels=1",), ("model.unet.channels=3", "model.unet.n_blocks=9")):  # not growth
        with pytest.raises(ValueError, match="weights of another shape"):
            transfer_weights(tiny_separator(*other), source)


def test_saved_separator_carries_its_receptive_field_so_loading_needs_no_probe(tmp_path, monkeypatch):
    import sepgan.inference.backends as backends
    from sepgan.models.receptive_field import receptive_field
    from tests.conftest import tiny_separator

    model = tiny_separator()
    save_separator(model, tmp_path / "m.ckpt")
    monkeypatch.setattr(backends, "receptive_field", lambda *a, **k: pytest.fail("probed again"))
    assert backends.load_backend(tmp_path / "m.ckpt").receptive_field == receptive_field(model)


def test_deep_filter_takes_each_tap_from_its_own_frame():
    """A 3-frame mask whose only non-zero tap is the next frame's returns the mixture one frame later."""
    from sepgan.models.separator import apply_output

    mixture = torch.randn(1, 2, 5, 7)
    out = torch.zeros(1, 6, 5, 7)
    out[:, 4] = 20.0  # real part of the tap at offset +1: tanh(20) = 1 with no rotation
    estimate = apply_output(out, mixture)
    torch.testing.assert_close(estimate[..., :-1], mixture[..., 1:])
    assert torch.all(estimate[..., -1] == 0)  # nothing after the last frame
    out[:, 0], out[:, 4] = 20.0, 0.0  # the tap at offset -1
    estimate = apply_output(out, mixture)
    torch.testing.assert_close(estimate[..., 1:], mixture[..., :-1])
    assert torch.all(estimate[..., 0] == 0)


def test_deep_filter_model_starts_as_a_pass_through_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = Separator(FrontEnd(8000, 256, 128), unet=dict(n_blocks=3, channels=4), mask_frames=3).eval()
    assert model.net.last.out_channels == 6
    x = torch.randn(8000) * 0.1
    assert torch.corrcoef(torch.stack([x, model.separate(x)]))[0, 1] > 0.99
    save_separator(model, tmp_path / "df.ckpt")
    loaded = load_separator(str(tmp_path / "df.ckpt"))
    assert loaded.mask_frames == 3
    torch.testing.assert_close(loaded.separate(x), model.separate(x))


@pytest.mark.parametrize("representation, kwargs, message", [
    ("complex", dict(mask_frames=2), "odd number"),
    ("complex", dict(mask_frames=0), "odd number"),
    ("complex", dict(mask_frames=3, output="direct"), "output=direct"),
    ("magnitude", dict(mask_frames=3), "representation=magnitude"),
])
def test_bad_deep_filter_settings_are_named(representation, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Separator(FrontEnd(representation=representation), **kwargs)


def test_a_one_frame_model_starts_a_deep_filter_as_itself(tmp_path):
    from sepgan.models import transfer_weights
    from tests.conftest import save_checkpoint, tiny_separator

    one_frame = tiny_separator()
    source = save_checkpoint(one_frame, tmp_path / "one.ckpt")
    deep = tiny_separator("model.mask_frames=3", seed=5)
    transfer_weights(deep, source)
    x = torch.randn(8000) * 0.1
    torch.testing.assert_close(deep.separate(x), one_frame.separate(x))
    assert deep.net.last.weight[:2].abs().sum() == 0  # the earlier frame's tap starts empty


@pytest.mark.parametrize("stack_level", [0, 1])
@pytest.mark.parametrize("frames", [31, 32, 33, 70])
def test_stacked_frames_keep_shapes_and_halve_the_unet_steps(frames, stack_level):
    torch.manual_seed(0)
    net = UNet(2, 2, 33, block="tfc_tdf", n_blocks=5, channels=4, frame_stack=2, stack_level=stack_level).eval()
    assert net.time_factor == 2 * net.factor
    steps = []
    net.bottleneck.register_forward_hook(lambda module, args, out: steps.append(out.shape[-1]))
    first_level = []
    net.encoders[0].register_forward_hook(lambda module, args, out: first_level.append(out.shape[-1]))
    x = torch.randn(1, 2, 33, frames)
    out = net(x)
    assert out.shape == x.shape
    padded = -(-frames // net.time_factor) * net.time_factor
    assert steps == [padded // 2 // net.factor]
    assert first_level == [padded // 2 if stack_level == 0 else padded]  # stacked after it: every frame
    torch.testing.assert_close(net._unstack(net._stack(torch.arange(2.0 * 64).reshape(1, 2, 1, 64))),
                               torch.arange(2.0 * 64).reshape(1, 2, 1, 64))


def test_a_one_frame_model_starts_a_stacked_one_on_its_own_frame_grid(tmp_path):
    """At half the hop, every other frame is the one-frame model's grid: the stacked model starts as it there
    and holds each mask over the frame after it; what it learns from the frames between starts at zero."""
    from sepgan.models import transfer_weights
    from tests.conftest import save_checkpoint, tiny_separator

    one_frame = tiny_separator("frontend.hop_length=128")
    stacked = tiny_separator("frontend.hop_length=64", "model.unet.frame_stack=2", seed=3)
    transfer_weights(stacked, save_checkpoint(one_frame, tmp_path / "one.ckpt"))
    x = torch.randn(1, 8000) * 0.1
    coarse = one_frame.frontend.to_features(one_frame.frontend.stft(x))
    fine = stacked.frontend.to_features(stacked.frontend.stft(x))
    torch.testing.assert_close(fine[..., ::2], coarse)
    with torch.no_grad():
        out, held = one_frame.net(coarse), stacked.net(fine)
    torch.testing.assert_close(held[..., ::2], out)
    torch.testing.assert_close(held[..., 1::2], out[..., :held[..., 1::2].shape[-1]])
    assert stacked.net.first.weight[:, 2:].abs().sum() == 0  # the in-between frame is read with zeros


def test_a_one_frame_model_starts_one_stacked_after_its_first_level_from_its_taps(tmp_path):
    from sepgan.models import transfer_weights
    from tests.conftest import save_checkpoint, tiny_separator

    one_frame = tiny_separator("frontend.hop_length=128")
    stacked = tiny_separator("frontend.hop_length=64", "model.unet.frame_stack=2", "model.unet.stack_level=1", seed=3)
    copied, fresh = transfer_weights(stacked, save_checkpoint(one_frame, tmp_path / "one.ckpt"))
    assert not fresh
    down, strided = one_frame.net.downs[0][0].weight, stacked.net.downs[0][0].weight
    torch.testing.assert_close(strided[..., ::2], down)  # the old taps, two fine frames apart
    assert strided[..., 1::2].abs().sum() == 0
    up, held = one_frame.net.ups[0][0].weight, stacked.net.ups[0][0].weight
    for tap in range(2):  # each old tap over the two fine frames it now spans
        torch.testing.assert_close(held[..., 2 * tap:2 * tap + 2], up[..., tap:tap + 1].expand(-1, -1, -1, 2))
    torch.testing.assert_close(stacked.net.first.weight, one_frame.net.first.weight)  # level 0 reads every frame


@pytest.mark.parametrize("top_block, kinds", [("conv", ("ConvBlock", "ConvBlock")), ("none", ("Identity", "Sequential"))])
def test_a_lighter_top_level_keeps_shapes_and_changes_only_that_level(top_block, kinds):
    torch.manual_seed(0)
    light = UNet(2, 2, 33, block="tfc_tdf", n_blocks=5, channels=4, top_block=top_block).eval()
    same = UNet(2, 2, 33, block="tfc_tdf", n_blocks=5, channels=4).eval()
    assert (type(light.encoders[0]).__name__, type(light.decoders[0]).__name__) == kinds
    assert [type(m) for m in light.encoders[1:]] == [type(m) for m in same.encoders[1:]]
    assert sum(p.numel() for p in light.parameters()) < sum(p.numel() for p in same.parameters())
    x = torch.randn(1, 2, 33, 37)
    assert light(x).shape == x.shape


def test_a_lighter_top_level_starts_from_the_first_layer_of_each_full_resolution_block(tmp_path):
    from sepgan.models import transfer_weights
    from tests.conftest import save_checkpoint, tiny_separator

    full = tiny_separator("model.unet.block=tfc_tdf")
    light = tiny_separator("model.unet.block=tfc_tdf", "model.unet.top_block=conv", seed=3)
    copied, fresh = transfer_weights(light, save_checkpoint(full, tmp_path / "full.ckpt"))
    assert not fresh
    for side in ("encoders", "decoders"):
        layer, body = getattr(full.net, side)[0].tfc.convs[0], getattr(light.net, side)[0].body
        torch.testing.assert_close(body[0].weight, layer[0].weight)  # the convolution
        torch.testing.assert_close(body[1].running_var, layer[1].running_var)  # its norm
    torch.testing.assert_close(light.net.encoders[1].tfc.convs[0][0].weight, full.net.encoders[1].tfc.convs[0][0].weight)
