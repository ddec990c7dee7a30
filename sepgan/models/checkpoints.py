"""Rebuilding networks from sepgan checkpoints without Lightning or Hydra.

The LightningModules store each network's constructor arguments next to its weights
(`separator_config`, `discriminator_config`), so a checkpoint alone is enough.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from sepgan.audio import FrontEnd
from sepgan.models.discriminator import Discriminator
from sepgan.models.receptive_field import receptive_field
from sepgan.models.separator import Separator
from sepgan.models.speakers import SpeakerSeparator


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: '{path}'")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read checkpoint '{path}': {err}") from None


def _load(path, cls: type[nn.Module], name: str, map_location) -> nn.Module:
    checkpoint = read_checkpoint(path, map_location)
    if f"{name}_config" not in checkpoint:
        raise ValueError(f"'{path}' is not a sepgan checkpoint with a {name} (it has no {name}_config)")
    if cls is Separator and "sources" in checkpoint[f"{name}_config"]:
        cls = SpeakerSeparator  # a separator of several voices
    module = cls(**checkpoint[f"{name}_config"])
    prefix = f"{name}."
    module.load_state_dict({k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
    if "receptive_field" in checkpoint:
        module.stored_receptive_field = int(checkpoint["receptive_field"])
    return module.eval()


def save_separator(separator: Separator | SpeakerSeparator, path: str | Path) -> None:
    """A checkpoint with the separator alone (no optimizer or training state), e.g. to ship a model.

    It also stores the separator's measured receptive field, so that loading it for chunked
    separation needs no probe (a model without a bounded one is saved without it).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    state = {f"separator.{k}": v.detach().cpu() for k, v in separator.state_dict().items()}
    checkpoint = {"state_dict": state, "separator_config": separator.config}
    try:
        checkpoint["receptive_field"] = receptive_field(separator)
    except ValueError:  # unbounded (e.g. a recurrent layer over all frames): chunked separation refuses it anyway
        pass
    torch.save(checkpoint, path)


def load_separator(path: str | Path, map_location: str | torch.device = "cpu") -> Separator | SpeakerSeparator:
    """A trained separator (generator) from a checkpoint of any stage, in eval mode; a `SpeakerSeparator` for voices."""
    return _load(path, Separator, "separator", map_location)


def transfer_weights(module: nn.Module, path: str | Path, name: str = "separator") -> tuple[list[str], list[str]]:
    """Copy into `module` every tensor of a checkpoint's `name` network that matches by name and shape.

    Unlike `load_separator`, the module keeps its own configuration: a model with another STFT hop,
    an added bottleneck block or a new head starts from trained weights wherever they fit; a one-frame
    mask's output layer goes to the centre tap of a deep filter (`mask_frames` > 1), a U-Net reading one
    frame per step into one that reads several (`frame_stack`; see `_stacked_frames`), TDF layers
    with fewer hidden units go into wider ones (a smaller `bn_factor`; see `_wider_tdf`), and a U-Net
    into a wider one (a larger `channels`; see `_wider_channels`), and the first layer of each
    full-resolution block into a lighter top level (`top_block=conv`; see `_light_top`). Returns
    (names copied, names of the module left as initialised); a tensor whose shape differs is an error,
    so a different network is never half-loaded by accident.
    """
    checkpoint = read_checkpoint(path)
    prefix = f"{name}."
    source = {k[len(prefix):]: v for k, v in checkpoint.get("state_dict", {}).items() if k.startswith(prefix)}
    if not source:
        raise ValueError(f"'{path}' holds no {name} weights")
    target = module.state_dict()
    source.update(_centre_taps(source, target, getattr(module, "mask_frames", 1)))
    source.update(_stacked_frames(source, target))
    source.update(_wider_tdf(source, target))
    source.update(_light_top(source, target))
    source.update(_wider_channels(source, target))
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in source.items()
                  if k in target and v.shape != target[k].shape]
    if mismatched:
        raise ValueError(f"'{path}': weights of another shape: {'; '.join(mismatched[:5])}")
    copied = [k for k in source if k in target]
    if not copied:
        raise ValueError(f"'{path}': none of its {name} weights fit this model")
    module.load_state_dict({k: source[k] for k in copied}, strict=False)
    return copied, [k for k in target if k not in source]


def front_end_changes(module: nn.Module, path: str | Path) -> list[str]:
    """`frontend.KEY: trained -> now` for each front-end setting of `module` that differs from the one the
    checkpoint's separator was trained with (older checkpoints lack later keys: their defaults apply).

    `transfer_weights` copies tensors only, so weights trained on one spectrogram (a Hann window, say)
    can start a model that sees another; the caller says so, since the start is then not the same model.
    """
    config = read_checkpoint(path).get("separator_config") or {}
    if "frontend" not in config or not hasattr(module, "frontend"):
        return []
    trained, now = asdict(FrontEnd(**config["frontend"])), asdict(module.frontend)
    return [f"frontend.{key}: {trained[key]} -> {now[key]}" for key in now if trained[key] != now[key]]


def _centre_taps(source: dict, target: dict, taps: int) -> dict:
    """A one-frame mask head (`net.last`) widened to a deep filter's: the centre tap, zeros elsewhere.

    So a model with `mask_frames` = `taps` > 1 starts as exactly the one-frame model it is initialised
    from; any other model (e.g. one mask per voice) is left to the shape check.
    """
    widened = {}
    for key in ("net.last.weight", "net.last.bias"):
        if taps == 1 or key not in source or key not in target:
            continue
        have, want = source[key], target[key]
        if want.shape[0] == have.shape[0] * taps and have.shape[2:] == want.shape[2:]:
            head = have.new_zeros((want.shape[0], *have.shape[1:]))  # its inputs widened next, if the U-Net grew
            head[have.shape[0] * (taps // 2):have.shape[0] * (taps // 2 + 1)] = have
            widened[key] = head
    return widened


def _stacked_frames(source: dict, target: dict) -> dict:
    """A U-Net that reads one frame per step (`net.first`, `net.last`) into one that reads k (`frame_stack`).

    The first frame of each step is read with the checkpoint's weights and the others with zeros, and
    every frame of a step gets the first frame's output. So the model starts as the checkpoint run on
    every k-th frame, its mask held over the frames in between (at a hop k times shorter, that is
    the checkpoint's own frame grid), and training teaches it to read and write the frames between.
    Stacked after the first level (`stack_level=1`), the first down-sampling reads the checkpoint's
    taps k frames apart and the last up-sampling holds each of its taps over k frames; the first
    level's blocks then see frames k times closer than they were trained on, so the model starts only
    near the checkpoint.
    """
    first, stacked = source.get("net.first.weight"), target.get("net.first.weight")
    down, strided = source.get("net.downs.0.0.weight"), target.get("net.downs.0.0.weight")
    if first is not None and stacked is not None and stacked.shape[1] != first.shape[1] \
            and stacked.shape[1] % first.shape[1] == 0:
        k = stacked.shape[1] // first.shape[1]
        widened = {"net.first.weight": torch.cat([first] + [torch.zeros_like(first)] * (k - 1), dim=1)}
        for key in ("net.last.weight", "net.last.bias"):
            if key in source:
                widened[key] = torch.cat([source[key]] * k, dim=0)
        return widened
    if down is not None and strided is not None and strided.shape[:3] == down.shape[:3] \
            and strided.shape[3] != down.shape[3] and strided.shape[3] % down.shape[3] == 0:
        # stacked after the first level (`stack_level=1`): the first down-sampling's time taps, k frames apart
        k = strided.shape[3] // down.shape[3]
        widened = {"net.downs.0.0.weight": torch.zeros_like(strided)}
        widened["net.downs.0.0.weight"][..., ::k] = down
        up = source.get("net.ups.0.0.weight")
        if up is not None:
            widened["net.ups.0.0.weight"] = up.repeat_interleave(k, dim=3)  # each tap held over k frames
        return widened
    return {}


def _light_top(source: dict, target: dict) -> dict:
    """The full-resolution level's blocks cut to one convolution each (`top_block=conv`): the first layer
    of the checkpoint's encoder and decoder block (its convolution and norm, the same shapes) goes to
    that convolution. The rest of each block is dropped, so the model starts near the checkpoint, not at it.
    """
    light = {}
    for side in ("encoders", "decoders"):
        layer, body = f"net.{side}.0.tfc.convs.0.", f"net.{side}.0.body."  # both: .0 the convolution, .1 its norm
        for key, value in source.items():
            if key.startswith(layer) and body + key[len(layer):] in target:
                light[body + key[len(layer):]] = value
    return light


def _wider_tdf(source: dict, target: dict) -> dict:
    """TDF layers of the checkpoint widened to the module's (more hidden units: a smaller `bn_factor`).

    The new units of `fc1` are copies of the checkpoint's (unit i of the wider layer is unit i mod
    n of the narrower one) with 10 % noise, and `fc2` reads them with zero weights. So the wider
    model starts as exactly the one it is initialised from, and its batch norm, which pools its
    statistics over the units, sees nearly the statistics it was trained with, in training as in
    evaluation. The noise is what lets the new units learn different things: exact copies of one
    unit, all read with zeros, would get equal gradients and stay equal for ever. Capacity is added
    to a trained model without starting it over. The noise is seeded, so the result is reproducible.
    """
    generator = torch.Generator().manual_seed(0)
    widened = {}
    for key, have in source.items():
        want = target.get(key)
        if want is None or want.ndim != 2 or have.ndim != 2:
            continue
        if key.endswith("tdf.fc1.weight") and want.shape[1] == have.shape[1] and want.shape[0] > have.shape[0]:
            grown = have[torch.arange(want.shape[0]) % have.shape[0]].clone()
            extra = grown[have.shape[0]:]
            spread = extra.std(dim=1, keepdim=True)
            extra += 0.1 * spread * torch.randn(extra.shape, generator=generator, dtype=extra.dtype)
        elif key.endswith("tdf.fc2.weight") and want.shape[0] == have.shape[0] and want.shape[1] > have.shape[1]:
            grown = torch.zeros_like(want)
            grown[:, :have.shape[1]] = have
        else:
            continue
        widened[key] = grown
    return widened


def _level_widths(state: dict) -> list[int] | None:
    """Channels of each U-Net level of a separator's state (`net.first` and `net.downs.*`), or None."""
    if "net.first.weight" not in state:
        return None
    widths, level = [state["net.first.weight"].shape[0]], 0
    while f"net.downs.{level}.0.weight" in state:
        widths.append(state[f"net.downs.{level}.0.weight"].shape[0])
        level += 1
    return widths


def _channel_dims(key: str, ndim: int) -> tuple[dict[int, tuple[int | None, bool]], int]:
    """The channel axes of a U-Net tensor and the axis a weight reads its inputs along.

    The axes come as {axis: (level, concatenated)}: the level whose width the axis has (None: the
    deepest) and whether it may hold several level-wide groups side by side (a dense layer's
    concatenated inputs, a decoder's upsampled and skip features). Frequency axes (TDF layers) and
    the spectral input and output are not channel axes.
    """
    parts = key.split(".")
    if parts[0] != "net" or ".tdf.fc" in key or key.endswith("num_batches_tracked"):
        return {}, 1
    part, index = parts[1], (int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None)
    if part == "first":
        return {0: (0, False)}, 1
    if part == "last":
        return ({1: (0, False)} if ndim > 1 else {}), 1
    if part == "downs":  # Conv2d (out = level + 1, in = level) and its norm
        return ({0: (index + 1, False), 1: (index, False)} if ndim > 1 else {0: (index + 1, False)}), 1
    if part == "ups":  # ConvTranspose2d: weight (in = level + 1, out = level); bias and norm: out
        return ({0: (index + 1, False), 1: (index, False)} if ndim > 1 else {0: (index, False)}), 0
    if part not in ("encoders", "decoders", "bottleneck", "temporal"):
        return {}, 1
    level = index if part in ("encoders", "decoders") else None
    return ({0: (level, True), 1: (level, True)} if ndim > 1 else {0: (level, True)}), 1


def _wider_channels(source: dict, target: dict) -> dict:
    """A checkpoint's U-Net widened to the module's: more channels at some or every level (e.g. a
    larger `channels`).

    Each old channel keeps its weights in its place (within each group of a concatenation), the new
    channels start as the module initialised them, and every old channel reads the new ones with
    zero weights. So the old channels, the mask and the speech are computed exactly as before, in
    training as in evaluation (batch norm is per channel; dropout, if any, only in distribution),
    while the new channels already respond to the input: their outgoing weights get gradients from
    the first step, and the added capacity trains from the trained model instead of from scratch.
    Only growth is handled: the same number of levels, none narrower than before.
    """
    old, new = _level_widths(source), _level_widths(target)
    if old is None or new is None or old == new or len(old) != len(new) or any(n < o for o, n in zip(old, new)):
        return {}
    deepest = len(old) - 1

    def placement(size: int, level: int, concatenated: bool) -> tuple[torch.Tensor, int]:
        """Where the `size` old entries of a channel axis go, and how long the axis must now be."""
        groups = size // old[level] if concatenated else 1
        if groups * old[level] != size:
            return torch.empty(0, dtype=torch.long), -1
        return torch.cat([g * new[level] + torch.arange(old[level]) for g in range(groups)]), groups * new[level]

    widened = {}
    for key, have in source.items():
        want = target.get(key)
        if want is None or want.shape == have.shape or want.ndim != have.ndim:
            continue
        dims, reads = _channel_dims(key, have.ndim)
        index = []
        for axis in range(have.ndim):
            if axis in dims:
                level, concatenated = dims[axis]
                ix, length = placement(have.shape[axis], deepest if level is None else level, concatenated)
            else:
                ix, length = torch.arange(have.shape[axis]), have.shape[axis]
            if length != want.shape[axis]:
                break  # another change than width: left to the shape check
            index.append(ix)
        else:
            grown = want.clone()
            grown[torch.meshgrid(*index, indexing="ij")] = have.to(grown)
            if have.ndim > 1 and reads in dims:  # old outputs must not hear the new inputs
                fresh_inputs = torch.ones(want.shape[reads], dtype=torch.bool)
                fresh_inputs[index[reads]] = False
                weights = grown.movedim((1 - reads, reads), (0, 1))  # a view: (outputs, inputs, ...)
                weights[index[1 - reads][:, None], fresh_inputs.nonzero().flatten()[None, :]] = 0
            widened[key] = grown
    return widened


def load_discriminator(path: str | Path, map_location: str | torch.device = "cpu") -> Discriminator:
    """A trained discriminator from a checkpoint of the discriminator or adversarial stage."""
    return _load(path, Discriminator, "discriminator", map_location)
