"""nnU-Net v2's U-Nets built from ``plans.json``, without dynamic-network-architectures.

A faithful re-implementation of ``dynamic_network_architectures`` (DNA) 0.4's
``PlainConvUNet`` and ``ResidualEncoderUNet`` (``BasicBlockD`` / ``BottleneckD``) as nnU-Net
builds them for inference (``deep_supervision=False``): the same modules, the same order of
operations, the same parameter names. It imports only torch, so neither timm nor torchvision
(DNA's dependencies) is needed, and it can be loaded by file path in a venv without medseg.

Two differences in bookkeeping, none in arithmetic: DNA registers every conv/norm twice
(``block.conv`` and ``block.all_modules.0``) and the encoder twice (``encoder`` and
``decoder.encoder``), so its ``state_dict`` holds each encoder tensor four times. These modules
register each tensor once; :func:`canonical_state_dict` maps a DNA/nnU-Net state dict onto these
names, checks that every alias carries the same tensor as its twin, and the result is loaded
with ``strict=True`` (missing, unexpected or mis-shaped tensors are refused).

Spec errors (unknown operator names, inconsistent lengths) raise ``ValueError`` with a one-line
message; callers wrap it in medseg's typed errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "NnUnetEnsemble", "build_ensemble", "build_network",
           "canonical_state_dict"]

#: plans.json class names medseg builds (old plans name them without the module path)
ARCHITECTURES = {
    "dynamic_network_architectures.architectures.unet.PlainConvUNet": "plain",
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet": "residual",
    "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet": "residual",
    "PlainConvUNet": "plain",
    "ResidualEncoderUNet": "residual",
}
_CONV = {"torch.nn.modules.conv.Conv2d": nn.Conv2d, "torch.nn.modules.conv.Conv3d": nn.Conv3d,
         "torch.nn.Conv2d": nn.Conv2d, "torch.nn.Conv3d": nn.Conv3d}
_NORM = {f"torch.nn.modules.{m}.{c}{d}d": getattr(nn, f"{c}{d}d")
         for m, c in (("instancenorm", "InstanceNorm"), ("batchnorm", "BatchNorm"))
         for d in (2, 3)} | {f"torch.nn.{c}{d}d": getattr(nn, f"{c}{d}d")
                             for c in ("InstanceNorm", "BatchNorm") for d in (2, 3)}
_DROPOUT = {f"torch.nn.modules.dropout.{c}": getattr(nn, c)
            for c in ("Dropout", "Dropout2d", "Dropout3d")} | {
    f"torch.nn.{c}": getattr(nn, c) for c in ("Dropout", "Dropout2d", "Dropout3d")}
_NONLIN = {f"torch.nn.{c}": getattr(nn, c) for c in ("LeakyReLU", "ReLU", "GELU", "PReLU", "ELU")
           } | {f"torch.nn.modules.activation.{c}": getattr(nn, c)
                for c in ("LeakyReLU", "ReLU", "GELU", "PReLU", "ELU")}
_BLOCKS = ("BasicBlockD", "BottleneckD")


def _op(table: Mapping[str, type], name: Any, what: str) -> Any:
    if name is None:
        return None
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"{what} {name!r} is not one medseg builds (known: "
                         f"{', '.join(sorted({k.rsplit('.', 1)[-1] for k in table}))})")
    return table[name]


def _as_list(conv: type, v: Any) -> list[int]:
    nd = 3 if conv is nn.Conv3d else 2
    return [int(i) for i in v] if isinstance(v, (list, tuple)) else [int(v)] * nd


class _Ops:
    """The operator classes and their keyword arguments shared by every block."""

    def __init__(self, conv: type, bias: bool, norm: Any, norm_kw: dict[str, Any] | None,
                 drop: Any, drop_kw: dict[str, Any] | None, nonlin: Any,
                 nonlin_kw: dict[str, Any] | None) -> None:
        self.conv, self.bias = conv, bias
        self.norm, self.norm_kw = norm, dict(norm_kw or {})
        self.drop, self.drop_kw = drop, dict(drop_kw or {})
        self.nonlin, self.nonlin_kw = nonlin, dict(nonlin_kw or {})

    def without(self, *, drop: bool = True, nonlin: bool = True) -> _Ops:
        return _Ops(self.conv, self.bias, self.norm, self.norm_kw, None if drop else self.drop,
                    self.drop_kw, None if nonlin else self.nonlin, self.nonlin_kw)


class ConvDropoutNormReLU(nn.Module):
    """DNA's block: conv -> (dropout) -> (norm) -> (nonlin); ``nonlin_first`` swaps the last
    two. ``op_names`` lists the attribute of each step in DNA's ``all_modules`` order."""

    def __init__(self, ops: _Ops, cin: int, cout: int, kernel: Any, stride: Any,
                 bias: bool | None = None, nonlin_first: bool = False) -> None:
        super().__init__()
        kernel, stride = _as_list(ops.conv, kernel), _as_list(ops.conv, stride)
        self.conv = ops.conv(cin, cout, kernel, stride, padding=[(k - 1) // 2 for k in kernel],
                             dilation=1, bias=ops.bias if bias is None else bias)
        names = ["conv"]
        if ops.drop is not None:
            self.dropout = ops.drop(**ops.drop_kw)
            names.append("dropout")
        if ops.norm is not None:
            self.norm = ops.norm(cout, **ops.norm_kw)
            names.append("norm")
        if ops.nonlin is not None:
            self.nonlin = ops.nonlin(**ops.nonlin_kw)
            names.append("nonlin")
        if nonlin_first and ops.norm is not None and ops.nonlin is not None:
            names[-1], names[-2] = names[-2], names[-1]
        self.op_names = tuple(names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.op_names:
            x = getattr(self, name)(x)
        return x


class StackedConvBlocks(nn.Module):
    def __init__(self, n: int, ops: _Ops, cin: int, cout: int, kernel: Any, stride: Any,
                 nonlin_first: bool = False) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            ConvDropoutNormReLU(ops, cin, cout, kernel, stride, nonlin_first=nonlin_first),
            *[ConvDropoutNormReLU(ops, cout, cout, kernel, 1, nonlin_first=nonlin_first)
              for _ in range(1, n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


def _has_stride(stride: Sequence[int]) -> bool:
    return any(s != 1 for s in stride)


def _skip(ops: _Ops, cin: int, cout: int, stride: list[int]) -> nn.Module:
    """DNA's residual shortcut: average pooling for a stride, 1x1 conv + norm for new widths."""
    mods: list[nn.Module] = []
    if _has_stride(stride):
        pool: Any = nn.AvgPool3d if ops.conv is nn.Conv3d else nn.AvgPool2d
        mods.append(pool(tuple(stride), tuple(stride)))
    if cin != cout:
        mods.append(ConvDropoutNormReLU(ops.without(), cin, cout, 1, 1, bias=False))
    return nn.Sequential(*mods) if mods else nn.Identity()


class BasicBlockD(nn.Module):
    def __init__(self, ops: _Ops, cin: int, cout: int, kernel: Any, stride: Any) -> None:
        super().__init__()
        stride = _as_list(ops.conv, stride)
        self.conv1 = ConvDropoutNormReLU(ops, cin, cout, kernel, stride)
        self.conv2 = ConvDropoutNormReLU(ops.without(), cout, cout, kernel, 1)
        self.nonlin2 = ops.nonlin(**ops.nonlin_kw) if ops.nonlin is not None else nn.Identity()
        self.skip = _skip(ops, cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        out += self.skip(x)
        return self.nonlin2(out)


class BottleneckD(nn.Module):
    def __init__(self, ops: _Ops, cin: int, mid: int, cout: int, kernel: Any, stride: Any
                 ) -> None:
        super().__init__()
        stride = _as_list(ops.conv, stride)
        self.conv1 = ConvDropoutNormReLU(ops.without(nonlin=False), cin, mid, 1, 1)
        self.conv2 = ConvDropoutNormReLU(ops, mid, mid, kernel, stride)
        self.conv3 = ConvDropoutNormReLU(ops.without(), mid, cout, 1, 1)
        self.nonlin3 = ops.nonlin(**ops.nonlin_kw) if ops.nonlin is not None else nn.Identity()
        self.skip = _skip(ops, cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        out += self.skip(x)
        return self.nonlin3(out)


class StackedResidualBlocks(nn.Module):
    def __init__(self, n: int, ops: _Ops, cin: int, cout: int, kernel: Any, stride: Any,
                 block: str, mid: int | None) -> None:
        super().__init__()
        blocks: list[nn.Module]
        if block == "BasicBlockD":
            blocks = [BasicBlockD(ops, cin if i == 0 else cout, cout, kernel,
                                  stride if i == 0 else 1) for i in range(n)]
        else:
            if mid is None:
                raise ValueError("BottleneckD blocks need bottleneck_channels")
            blocks = [BottleneckD(ops, cin if i == 0 else cout, mid, cout, kernel,
                                  stride if i == 0 else 1) for i in range(n)]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Encoder(nn.Module):
    """DNA's ``PlainConvEncoder`` (``residual=False``) or ``ResidualEncoder`` (stem + residual
    stages); returns the skips of every stage, the bottleneck last."""

    def __init__(self, ops: _Ops, cin: int, features: list[int], kernels: list[Any],
                 strides: list[Any], n_per_stage: list[int], *, residual: bool,
                 block: str = "BasicBlockD", bottleneck: list[int | None] | None = None,
                 stem_channels: int | None = None, nonlin_first: bool = False) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        self.stem: nn.Module | None = None
        if residual:
            stem = stem_channels or features[0]
            self.stem = StackedConvBlocks(1, ops, cin, stem, kernels[0], 1)
            cin = stem
        for s, feat in enumerate(features):
            if residual:
                mid = (bottleneck or [None] * len(features))[s]
                stages.append(StackedResidualBlocks(n_per_stage[s], ops, cin, feat, kernels[s],
                                                    strides[s], block, mid))
            else:  # DNA wraps each plain stage in a Sequential of one StackedConvBlocks
                stages.append(nn.Sequential(StackedConvBlocks(
                    n_per_stage[s], ops, cin, feat, kernels[s], strides[s], nonlin_first)))
            cin = feat
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.stem is not None:
            x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class Decoder(nn.Module):
    """DNA's ``UNetDecoder`` without deep supervision: transposed conv up, concatenate the skip,
    conv blocks; only the last (full-resolution) segmentation layer is used."""

    def __init__(self, ops: _Ops, features: list[int], kernels: list[Any], strides: list[Any],
                 n_per_stage: list[int], num_classes: int, nonlin_first: bool = False) -> None:
        super().__init__()
        tconv: Any = nn.ConvTranspose3d if ops.conv is nn.Conv3d else nn.ConvTranspose2d
        stages, ups, segs = [], [], []
        for s in range(1, len(features)):
            below, skip = features[-s], features[-(s + 1)]
            st = _as_list(ops.conv, strides[-s])
            ups.append(tconv(below, skip, tuple(st), tuple(st), bias=ops.bias))
            stages.append(StackedConvBlocks(n_per_stage[s - 1], ops, 2 * skip, skip,
                                            kernels[-(s + 1)], 1, nonlin_first))
            segs.append(ops.conv(skip, num_classes, 1, 1, 0, bias=True))
        self.stages = nn.ModuleList(stages)
        self.transpconvs = nn.ModuleList(ups)
        self.seg_layers = nn.ModuleList(segs)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        x = skips[-1]
        for s, stage in enumerate(self.stages):
            x = stage(torch.cat((self.transpconvs[s](x), skips[-(s + 2)]), 1))
        return self.seg_layers[-1](x)


class NnUnet(nn.Module):
    """``PlainConvUNet`` / ``ResidualEncoderUNet`` for inference: ``(B, C, *spatial)`` ->
    ``(B, num_classes, *spatial)`` logits."""

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _lengths(kw: dict[str, Any], key: str, n: int, default: Any = None) -> list[Any]:
    v = kw.get(key, default)
    out = list(v) if isinstance(v, (list, tuple)) else [v] * n
    if len(out) != n:
        raise ValueError(f"architecture {key} has {len(out)} entries, n_stages is {n}")
    return out


def build_network(arch_class: str, arch_kwargs: dict[str, Any], in_channels: int,
                  num_classes: int) -> NnUnet:
    """The network of ``plans.json`` ``architecture`` (class name and ``arch_kwargs``, operator
    names as strings) for ``in_channels`` inputs and ``num_classes`` output heads."""
    kind = ARCHITECTURES.get(arch_class)
    if kind is None:
        raise ValueError(f"network class {arch_class!r} is not one medseg builds (it builds "
                         "PlainConvUNet and ResidualEncoderUNet)")
    kw = dict(arch_kwargs)
    conv = _op(_CONV, kw.get("conv_op"), "conv_op")
    if conv is None:
        raise ValueError("architecture has no conv_op")
    ops = _Ops(conv, bool(kw.get("conv_bias", False)), _op(_NORM, kw.get("norm_op"), "norm_op"),
               kw.get("norm_op_kwargs"), _op(_DROPOUT, kw.get("dropout_op"), "dropout_op"),
               kw.get("dropout_op_kwargs"), _op(_NONLIN, kw.get("nonlin"), "nonlin"),
               kw.get("nonlin_kwargs"))
    n = int(kw["n_stages"])
    feats = [int(f) for f in _lengths(kw, "features_per_stage", n)]
    kernels = _lengths(kw, "kernel_sizes", n)
    strides = _lengths(kw, "strides", n)
    dec = [int(v) for v in _lengths(kw, "n_conv_per_stage_decoder", n - 1)]
    nonlin_first = bool(kw.get("nonlin_first", False))
    if kind == "plain":
        enc = Encoder(ops, in_channels, feats, kernels, strides,
                      [int(v) for v in _lengths(kw, "n_conv_per_stage", n)], residual=False,
                      nonlin_first=nonlin_first)
        return NnUnet(enc, Decoder(ops, feats, kernels, strides, dec, num_classes, nonlin_first))
    block = str(kw.get("block", "BasicBlockD")).rsplit(".", 1)[-1]
    if block not in _BLOCKS:
        raise ValueError(f"residual block {block!r} is not one medseg builds "
                         f"({', '.join(_BLOCKS)})")
    if kw.get("squeeze_excitation") or kw.get("stochastic_depth_p"):
        raise ValueError("squeeze-excitation / stochastic-depth residual encoders are not built")
    bott = kw.get("bottleneck_channels")
    enc = Encoder(ops, in_channels, feats, kernels, strides,
                  [int(v) for v in _lengths(kw, "n_blocks_per_stage", n)], residual=True,
                  block=block, bottleneck=_lengths(kw, "bottleneck_channels", n, bott),
                  stem_channels=kw.get("stem_channels"))
    return NnUnet(enc, Decoder(ops, feats, kernels, strides, dec, num_classes))


def _aliases(net: nn.Module) -> dict[str, str]:
    """DNA prefix -> this module's prefix, for every ``all_modules.i`` of every block."""
    out: dict[str, str] = {}
    for path, mod in net.named_modules():
        if isinstance(mod, ConvDropoutNormReLU):
            for i, name in enumerate(mod.op_names):
                out[f"{path}.all_modules.{i}."] = f"{path}.{name}."
    return out


def canonical_state_dict(net: nn.Module, state: dict[str, torch.Tensor]
                         ) -> dict[str, torch.Tensor]:
    """Map an nnU-Net (DNA) ``state_dict`` onto ``net``'s parameter names.

    ``decoder.encoder.*`` and ``*.all_modules.i.*`` are aliases in DNA; each must hold the same
    values as its twin (else ``ValueError``) and is dropped. The result still has to pass
    ``net.load_state_dict(..., strict=True)``.
    """
    alias = _aliases(net)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len("decoder."):] if key.startswith("decoder.encoder.") else key
        for prefix, target in alias.items():
            if name.startswith(prefix):
                name = target + name[len(prefix):]
                break
        if name in out:
            if out[name].shape != value.shape or not torch.equal(out[name], value):
                raise ValueError(f"checkpoint tensors {key!r} and {name!r} should be one tensor "
                                 "but differ")
            continue
        out[name] = value
    return out


class NnUnetEnsemble(nn.Module):
    """Several folds of one configuration: the mean of their logits. nnU-Net averages the
    folds' sliding-window logits; every step of that is linear, so averaging per window (here)
    gives the same result up to float rounding, in one pass over the windows."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.folds[0](x)
        for net in self.folds[1:]:
            out = out + net(x)
        return out / len(self.folds) if len(self.folds) > 1 else out


def build_ensemble(arch_class: str, arch_kwargs: dict[str, Any], in_channels: int,
                   num_classes: int, folds: int = 1) -> NnUnetEnsemble:
    """``folds`` copies of :func:`build_network` (weights still to be loaded)."""
    return NnUnetEnsemble([build_network(arch_class, arch_kwargs, in_channels, num_classes)
                           for _ in range(max(1, int(folds)))])
