"""Eager-PyTorch peers of the flowlib models, for timing only (``benchmarks.models``).

Each class rebuilds one architecture from the official code in plain eager
PyTorch, NCHW, written for this benchmark (no upstream code). They exist to time the
*same compute* as the flowlib model on the same machine: same layers, same sizes, same
pre/post-processing. Their weights are random; numerical parity with flowlib is not a
goal and not checked. ``PARAM_COUNTS`` holds the official models' parameter counts that
``benchmarks.models`` asserts, so a layer that went missing cannot go unnoticed.

Where there is a choice of eager implementation we take the faster one on CPU, so that
the ratio flowlib / torch is measured against a fair baseline:

* FlowNetC correlation: 441 shifted slices of the zero-padded frame-2 feature, each
  contracted with frame 1 over channels. ``"vecdot"`` (channels-last,
  ``torch.linalg.vecdot``, no 256-channel temporary per shift) and ``"slices"``
  (NCHW product + sum) are both kept; :func:`fastest_correlation` times them on the
  run's feature size and the benchmark uses the faster. (A per-row ``einsum`` over
  ``unfold`` views and a broadcast product were 3-10x slower on this CPU; a full
  ``F.unfold`` of 441 patches would materialise a 441x larger tensor.)
* CFNet fused volumes: one shifted-slice product per disparity (GwcNet style); cascade
  warping: one ``torch.gather`` over the expanded feature (as upstream's
  ``SpatialTransformer``).

torch is an optional benchmark dependency; flowlib never imports this module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SpyNetPeer", "FlowNetSPeer", "FlowNetCPeer", "CFNetPeer", "PARAM_COUNTS", "make_peer",
           "count_parameters", "CORRELATIONS", "fastest_correlation"]

# The official parameter counts (CFNet: every registered parameter, incl. the unused
# combine3/redir3 of hourglassup).
PARAM_COUNTS = {
    "spynet": 1_440_300,
    "flownets": 38_675_536,
    "flownetc": 39_174_320,
    "cfnet": 23_051_396,
    "raft": 5_257_536,
    "raft_small": 990_162,
}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# FlowNetPytorch training mean (RGB).
_FLOWNET_MEAN = (0.45, 0.432, 0.411)
_DIV_FLOW = 20.0


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _channel_const(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


# ----------------------------------------------------------------------------- SpyNet


class SpyNetPeer(nn.Module):
    """SPyNet as sniklaus/pytorch-spynet computes it.

    forward(image1, image2): RGB in [0, 1], (B, 3, H, W) -> flow (B, 2, H, W) in pixels.
    """

    levels = 6

    def __init__(self) -> None:
        super().__init__()

        def basic() -> nn.Sequential:
            widths = (8, 32, 64, 32, 16, 2)
            layers: list[nn.Module] = []
            for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
                layers.append(nn.Conv2d(cin, cout, 7, 1, 3))
                if i < 4:
                    layers.append(nn.ReLU(inplace=False))
            return nn.Sequential(*layers)

        self.basic = nn.ModuleList(basic() for _ in range(self.levels))
        self._grids: dict[tuple, torch.Tensor] = {}

    def _base_grid(self, flow: torch.Tensor) -> torch.Tensor:
        b, _, h, w = flow.shape
        key = (h, w, flow.dtype, flow.device)
        if key not in self._grids:
            gx = torch.linspace(-1.0, 1.0, w, dtype=flow.dtype, device=flow.device).view(1, 1, 1, w)
            gy = torch.linspace(-1.0, 1.0, h, dtype=flow.dtype, device=flow.device).view(1, 1, h, 1)
            self._grids[key] = torch.cat([gx.expand(1, 1, h, w), gy.expand(1, 1, h, w)], 1)
        return self._grids[key]

    def _backwarp(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        # Exact pixel-coordinate warping with border clamping: grid_sample(border,
        # align_corners=True) fed base grid + flow * 2 / (size - 1).
        _, _, h, w = flow.shape
        scale = torch.tensor([2.0 / (w - 1), 2.0 / (h - 1)], dtype=flow.dtype,
                             device=flow.device).view(1, 2, 1, 1)
        grid = (self._base_grid(flow) + flow * scale).permute(0, 2, 3, 1)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        _, _, h, w = image1.shape
        hp, wp = int(math.ceil(h / 32) * 32), int(math.ceil(w / 32) * 32)
        mean, std = _channel_const(_IMAGENET_MEAN, image1), _channel_const(_IMAGENET_STD, image1)
        pyr1, pyr2 = [], []
        for im, pyr in ((image1, pyr1), (image2, pyr2)):
            im = F.interpolate(im, size=(hp, wp), mode="bilinear", align_corners=False)
            pyr.append((im - mean) / std)
        while len(pyr1) < self.levels and (pyr1[0].shape[2] > 32 or pyr1[0].shape[3] > 32):
            pyr1.insert(0, F.avg_pool2d(pyr1[0], 2, 2, count_include_pad=False))
            pyr2.insert(0, F.avg_pool2d(pyr2[0], 2, 2, count_include_pad=False))
        b = image1.shape[0]
        h0, w0 = pyr1[0].shape[2:]
        flow = image1.new_zeros(b, 2, h0 // 2, w0 // 2)
        for k, (im1, im2) in enumerate(zip(pyr1, pyr2)):
            up = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            if up.shape[2] != im1.shape[2]:
                up = F.pad(up, (0, 0, 0, 1), mode="replicate")
            if up.shape[3] != im1.shape[3]:
                up = F.pad(up, (0, 1, 0, 0), mode="replicate")
            flow = self.basic[k](torch.cat([im1, self._backwarp(im2, up), up], 1)) + up
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        scale = torch.tensor([w / wp, h / hp], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
        return flow * scale


# ---------------------------------------------------------------------------- FlowNet


def _conv(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, (k - 1) // 2, bias=True),
                         nn.LeakyReLU(0.1, inplace=True))


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                         nn.LeakyReLU(0.1, inplace=True))


def _crop_like(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # FlowNetPytorch crop_like: keep the top-left block when the upsampled map is larger.
    return x[:, :, : target.shape[2], : target.shape[3]]


class _FlowNetDecoder(nn.Module):
    """conv4 ... conv6_1 and the refinement decoder shared by FlowNetS and FlowNetC (§1.2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv4, self.conv4_1 = _conv(256, 512, s=2), _conv(512, 512)
        self.conv5, self.conv5_1 = _conv(512, 512, s=2), _conv(512, 512)
        self.conv6, self.conv6_1 = _conv(512, 1024, s=2), _conv(1024, 1024)
        self.deconv5, self.deconv4 = _deconv(1024, 512), _deconv(1026, 256)
        self.deconv3, self.deconv2 = _deconv(770, 128), _deconv(386, 64)
        self.predict_flow6 = nn.Conv2d(1024, 2, 3, 1, 1, bias=False)
        self.predict_flow5 = nn.Conv2d(1026, 2, 3, 1, 1, bias=False)
        self.predict_flow4 = nn.Conv2d(770, 2, 3, 1, 1, bias=False)
        self.predict_flow3 = nn.Conv2d(386, 2, 3, 1, 1, bias=False)
        self.predict_flow2 = nn.Conv2d(194, 2, 3, 1, 1, bias=False)
        self.up6, self.up5, self.up4, self.up3 = (
            nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=False) for _ in range(4))

    def forward(self, skip2: torch.Tensor, skip3: torch.Tensor) -> torch.Tensor:
        conv4 = self.conv4_1(self.conv4(skip3))
        conv5 = self.conv5_1(self.conv5(conv4))
        x = self.conv6_1(self.conv6(conv5))
        for skip, predict, up, deconv in ((conv5, self.predict_flow6, self.up6, self.deconv5),
                                          (conv4, self.predict_flow5, self.up5, self.deconv4),
                                          (skip3, self.predict_flow4, self.up4, self.deconv3),
                                          (skip2, self.predict_flow3, self.up3, self.deconv2)):
            flow = predict(x)
            x = torch.cat([skip, _crop_like(deconv(x), skip), _crop_like(up(flow), skip)], 1)
        return self.predict_flow2(x)


def _flownet_inputs(image: torch.Tensor) -> torch.Tensor:
    return image - _channel_const(_FLOWNET_MEAN, image)


def _flownet_output(flow2: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # run_inference.py: div_flow x flow2, bilinear (align_corners=False) to full size, no x4.
    return F.interpolate(_DIV_FLOW * flow2, size=size, mode="bilinear", align_corners=False)


class FlowNetSPeer(nn.Module):
    """FlowNetS (FlowNetPytorch layout, no BN). forward(image1, image2) RGB [0,1] NCHW ->
    flow (B, 2, H, W) at full resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv(6, 64, 7, 2)
        self.conv2 = _conv(64, 128, 5, 2)
        self.conv3, self.conv3_1 = _conv(128, 256, 5, 2), _conv(256, 256)
        self.decoder = _FlowNetDecoder()

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        x = torch.cat([_flownet_inputs(image1), _flownet_inputs(image2)], 1)
        conv2 = self.conv2(self.conv1(x))
        conv3 = self.conv3_1(self.conv3(conv2))
        return _flownet_output(self.decoder(conv2, conv3), tuple(image1.shape[2:]))


def _padded_channels_last(f1: torch.Tensor, f2: torch.Tensor, pad: int):
    f1c = f1.permute(0, 2, 3, 1).contiguous()
    f2p = F.pad(f2, (pad, pad, pad, pad)).permute(0, 2, 3, 1).contiguous()
    return f1c, f2p


def correlation_vecdot(f1: torch.Tensor, f2: torch.Tensor, radius: int, stride: int) -> torch.Tensor:
    """FlowNet correlation (kernel 1): (B, C, H, W) x2 -> (B, (2R+1)^2, H, W), dy-major
    channels, mean over C, zero outside the image.

    Channels-last: one ``torch.linalg.vecdot`` (a fused multiply-reduce over the
    contiguous channel axis) per displacement on a zero-padded frame-2 feature.
    """
    c, h, w = f1.shape[1:]
    f1c, f2p = _padded_channels_last(f1, f2, radius * stride)
    out = []
    for j in range(2 * radius + 1):
        for i in range(2 * radius + 1):
            shifted = f2p[:, j * stride: j * stride + h, i * stride: i * stride + w]
            out.append(torch.linalg.vecdot(f1c, shifted))
    return torch.stack(out, 1) / c


def correlation_slices(f1: torch.Tensor, f2: torch.Tensor, radius: int, stride: int) -> torch.Tensor:
    """Same values as :func:`correlation_vecdot`; NCHW product + channel sum per shift."""
    c, h, w = f1.shape[1:]
    pad = radius * stride
    f2p = F.pad(f2, (pad, pad, pad, pad))
    out = []
    for j in range(2 * radius + 1):
        for i in range(2 * radius + 1):
            shifted = f2p[:, :, j * stride: j * stride + h, i * stride: i * stride + w]
            out.append((f1 * shifted).sum(1))
    return torch.stack(out, 1) / c


CORRELATIONS = {"vecdot": correlation_vecdot, "slices": correlation_slices}


def fastest_correlation(shape: tuple[int, int, int, int], *, runs: int = 3) -> tuple[str, dict]:
    """Time every eager correlation on random (B, C, H, W) features; the fastest name and
    the median seconds of each (so the peer uses the best eager variant on this CPU)."""
    import statistics
    import time

    f1, f2 = torch.randn(shape), torch.randn(shape)
    times = {}
    with torch.inference_mode():
        for name, fn in CORRELATIONS.items():
            fn(f1, f2, 10, 2)
            samples = []
            for _ in range(runs):
                t0 = time.perf_counter()
                fn(f1, f2, 10, 2)
                samples.append(time.perf_counter() - t0)
            times[name] = statistics.median(samples)
    return min(times, key=times.get), times


class FlowNetCPeer(nn.Module):
    """FlowNetC (FlowNetPytorch layout). Correlation: max displacement 20, stride 2 (441 ch)."""

    def __init__(self, correlation_impl: str = "vecdot") -> None:
        super().__init__()
        self.conv1 = _conv(3, 64, 7, 2)
        self.conv2 = _conv(64, 128, 5, 2)
        self.conv3 = _conv(128, 256, 5, 2)
        self.conv_redir = _conv(256, 32, 1, 1)
        self.conv3_1 = _conv(473, 256)
        self.decoder = _FlowNetDecoder()
        self.correlation = CORRELATIONS[correlation_impl]

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        # Siamese tower with shared weights: upstream runs the two frames one after another.
        conv2a = self.conv2(self.conv1(_flownet_inputs(image1)))
        conv3a = self.conv3(conv2a)
        conv3b = self.conv3(self.conv2(self.conv1(_flownet_inputs(image2))))
        corr = F.leaky_relu(self.correlation(conv3a, conv3b, 10, 2), 0.1)
        conv3_1 = self.conv3_1(torch.cat([self.conv_redir(conv3a), corr], 1))
        return _flownet_output(self.decoder(conv2a, conv3_1), tuple(image1.shape[2:]))


# ------------------------------------------------------------------------------ CFNet


def _convbn(cin: int, cout: int, k: int = 3, s: int = 1, p: int = 1, *, act: bool = True,
            ndim: int = 2) -> nn.Sequential:
    conv = (nn.Conv2d if ndim == 2 else nn.Conv3d)(cin, cout, k, s, p, bias=False)
    bn = (nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d)(cout)
    return nn.Sequential(conv, bn, nn.Mish()) if act else nn.Sequential(conv, bn)


def _deconvbn3d(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose3d(cin, cout, 3, 2, 1, output_padding=1, bias=False),
                         nn.BatchNorm3d(cout))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _convbn(cin, cout, 3, stride, 1)
        self.conv2 = _convbn(cout, cout, 3, 1, 1, act=False)
        self.downsample = _convbn(cin, cout, 1, stride, 0, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + self.downsample(x)


class _PyramidPooling(nn.Module):
    def __init__(self, channels: int = 512) -> None:
        super().__init__()
        self.paths = nn.ModuleList(_convbn(channels, channels, 1, 1, 0) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        pool_sizes = [int(v) for v in torch.linspace(2, min(h, w), 4)]
        kernels = [(int(h / p), int(w / p)) for p in pool_sizes][::-1]
        total = x
        for path, k in zip(self.paths, kernels):
            y = path(F.avg_pool2d(x, k, k))
            total = total + 0.25 * F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return F.mish(total / 2.0)


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_convbn(cin, hidden), nn.Conv2d(hidden, cout, 1, bias=False))


class _FeatureExtraction(nn.Module):
    """CFNet's cost volumes; returns {gw2..gw6, concat2..concat6} NCHW."""

    def __init__(self) -> None:
        super().__init__()
        self.firstconv = nn.Sequential(_convbn(3, 32, 3, 2), _convbn(32, 32), _convbn(32, 32))
        self.layer2 = _BasicBlock(32, 64, 1)
        self.layer3 = _BasicBlock(64, 128, 2)
        self.layer4 = _BasicBlock(128, 192, 2)
        self.layer5 = _BasicBlock(192, 256, 2)
        self.layer6 = _BasicBlock(256, 512, 2)
        self.pyramid_pooling = _PyramidPooling(512)
        self.upconv = nn.ModuleDict({str(l): _convbn(cin, cout) for l, cin, cout in
                                     ((6, 512, 256), (5, 256, 192), (4, 192, 128), (3, 128, 64))})
        self.iconv = nn.ModuleDict({str(l): _convbn(cin, cout) for l, cin, cout in
                                    ((5, 512, 256), (4, 384, 192), (3, 256, 128), (2, 128, 64))})
        widths = {2: 64, 3: 128, 4: 192, 5: 256, 6: 512}
        gw = {2: (80, 80), 3: (160, 160), 4: (160, 160), 5: (320, 320), 6: (320, 320)}
        cat = {2: (32, 6), 3: (128, 12), 4: (128, 12), 5: (128, 12), 6: (128, 12)}
        self.gw = nn.ModuleDict({str(l): _head(widths[l], *gw[l]) for l in range(2, 7)})
        self.concat = nn.ModuleDict({str(l): _head(widths[l], *cat[l]) for l in range(2, 7)})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        skips = {2: self.layer2(self.firstconv(x))}
        for level in (3, 4, 5, 6):
            skips[level] = getattr(self, f"layer{level}")(skips[level - 1])
        decoded = {6: self.pyramid_pooling(skips[6])}
        for level in (5, 4, 3, 2):
            up = self.upconv[str(level + 1)](F.interpolate(decoded[level + 1], scale_factor=2,
                                                           mode="nearest"))
            decoded[level] = self.iconv[str(level)](torch.cat([skips[level], up], 1))
        out = {}
        for level in range(2, 7):
            out[f"gw{level}"] = self.gw[str(level)](decoded[level])
            out[f"concat{level}"] = self.concat[str(level)](decoded[level])
        return out


def _pair3d(cin: int, cout: int, act_last: bool) -> nn.Sequential:
    return nn.Sequential(_convbn(cin, cout, ndim=3), _convbn(cout, cout, ndim=3, act=act_last))


class _Hourglass(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = _convbn(c, 2 * c, 3, 2, 1, ndim=3)
        self.conv2 = _convbn(2 * c, 2 * c, ndim=3)
        self.conv3 = _convbn(2 * c, 4 * c, 3, 2, 1, ndim=3)
        self.conv4 = _convbn(4 * c, 4 * c, ndim=3)
        self.conv5 = _deconvbn3d(4 * c, 2 * c)
        self.conv6 = _deconvbn3d(2 * c, c)
        self.redir1 = _convbn(c, c, 1, 1, 0, act=False, ndim=3)
        self.redir2 = _convbn(2 * c, 2 * c, 1, 1, 0, act=False, ndim=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv2 = self.conv2(self.conv1(x))
        conv4 = self.conv4(self.conv3(conv2))
        conv5 = F.mish(self.conv5(conv4) + self.redir2(conv2))
        return F.mish(self.conv6(conv5) + self.redir1(x))


class _HourglassUp(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c, 2 * c, 3, 2, 1, bias=False)
        self.conv2 = _convbn(2 * c, 2 * c, ndim=3)
        self.conv3 = nn.Conv3d(2 * c, 4 * c, 3, 2, 1, bias=False)
        self.conv4 = _convbn(4 * c, 4 * c, ndim=3)
        self.conv8 = _deconvbn3d(4 * c, 2 * c)
        self.conv9 = _deconvbn3d(2 * c, c)
        self.combine1 = _convbn(4 * c, 2 * c, ndim=3)
        self.combine2 = _convbn(6 * c, 4 * c, ndim=3)
        self.combine3 = _convbn(6 * c, 4 * c, ndim=3)  # registered upstream, never called
        self.redir1 = _convbn(c, c, 1, 1, 0, act=False, ndim=3)
        self.redir2 = _convbn(2 * c, 2 * c, 1, 1, 0, act=False, ndim=3)
        self.redir3 = _convbn(4 * c, 4 * c, 1, 1, 0, act=False, ndim=3)  # never called

    def forward(self, x: torch.Tensor, cost5: torch.Tensor, cost6: torch.Tensor) -> torch.Tensor:
        conv1 = self.combine1(torch.cat([self.conv1(x), cost5], 1))
        conv2 = self.conv2(conv1)
        conv3 = self.combine2(torch.cat([self.conv3(conv2), cost6], 1))
        conv4 = self.conv4(conv3)
        conv8 = F.mish(self.conv8(conv4) + self.redir2(conv2))
        return F.mish(self.conv9(conv8) + self.redir1(x))


def _cost_head(c: int) -> nn.Sequential:
    return nn.Sequential(_convbn(c, c, ndim=3), nn.Conv3d(c, 1, 3, 1, 1, bias=False))


def _group_mean(product: torch.Tensor, groups: int) -> torch.Tensor:
    b, c = product.shape[:2]
    return product.view(b, groups, c // groups, *product.shape[2:]).mean(2)


def _gwc_volume(left: torch.Tensor, right: torch.Tensor, d: int, groups: int) -> torch.Tensor:
    b, c, h, w = left.shape
    volume = left.new_zeros(b, groups, d, h, w)
    for i in range(d):
        if i == 0:
            volume[:, :, 0] = _group_mean(left * right, groups)
        else:
            volume[:, :, i, :, i:] = _group_mean(left[..., i:] * right[..., :-i], groups)
    return volume


def _concat_volume(left: torch.Tensor, right: torch.Tensor, d: int) -> torch.Tensor:
    b, c, h, w = left.shape
    volume = left.new_zeros(b, 2 * c, d, h, w)
    for i in range(d):
        if i == 0:
            volume[:, :c, 0], volume[:, c:, 0] = left, right
        else:
            volume[:, :c, i, :, i:] = left[..., i:]
            volume[:, c:, i, :, i:] = right[..., :-i]
    return volume


def _gather_by_disparity(right: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """right (B, C, H, W), integer samples (B, N, H, W) -> (B, C, N, H, W) at column x - d,
    zero outside [0, W - 1] (upstream SpatialTransformer: expand + gather + mask)."""
    b, c, h, w = right.shape
    n = samples.shape[1]
    cols = torch.arange(w, device=right.device).view(1, 1, 1, w) - samples
    valid = ((cols >= 0) & (cols <= w - 1)).unsqueeze(1)
    index = cols.clamp(0, w - 1).unsqueeze(1).expand(b, c, n, h, w)
    gathered = torch.gather(right.unsqueeze(2).expand(b, c, n, h, w), 4, index)
    return gathered * valid.to(right.dtype)


def _bounds(prob: torch.Tensor, hyp: torch.Tensor, gamma: torch.Tensor,
            beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pred = (prob * hyp).sum(1)
    spread = (gamma + 1) * torch.sqrt((prob * (hyp - pred.unsqueeze(1)) ** 2).sum(1))
    return pred, pred - spread - beta, pred + spread + beta


def _upsample_disparity(d: torch.Tensor, scale: float, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate((d * scale).unsqueeze(1), size=size, mode="bilinear",
                         align_corners=True).squeeze(1)


class _CascadeStage(nn.Module):
    def __init__(self, cin: int, c: int) -> None:
        super().__init__()
        self.confidence0 = _pair3d(cin, c, act_last=True)
        self.confidence1 = _pair3d(c, c, act_last=False)
        self.confidence2 = _Hourglass(c)
        self.confidence3 = _Hourglass(c)
        self.classif0, self.classifmid, self.classif1 = (_cost_head(c) for _ in range(3))

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        cost0 = self.confidence0(volume)
        cost0 = self.confidence1(cost0) + cost0
        # classif0 / classifmid are training-only heads (not run at inference, as in flowlib).
        return self.classif1(self.confidence3(self.confidence2(cost0))).squeeze(1)


class CFNetPeer(nn.Module):
    """CFNet (Mish), inference path of the official code. forward(left, right): RGB in [0, 1]
    NCHW, any size (padded at the top and right to a multiple of 32, as upstream's KITTI
    loader: 375x1242 -> 384x1248) -> (disparity, s3 output, s4 output), each (B, H, W), the
    three maps flowlib's CFNet computes at inference."""

    def __init__(self, maxdisp: int = 256) -> None:
        super().__init__()
        self.maxdisp = maxdisp
        self.feature_extraction = _FeatureExtraction()
        self.dres0, self.dres1 = _pair3d(64, 32, True), _pair3d(32, 32, False)
        self.dres0_5, self.dres1_5 = _pair3d(64, 64, True), _pair3d(64, 64, False)
        self.dres0_6, self.dres1_6 = _pair3d(64, 64, True), _pair3d(64, 64, False)
        self.combine1 = _HourglassUp(32)
        self.dres3 = _Hourglass(32)
        self.classif0, self.classif1, self.classif2 = (_cost_head(32) for _ in range(3))
        self.stage_s3 = _CascadeStage(65, 32)
        self.stage_s2 = _CascadeStage(33, 16)
        self.gamma_s3, self.beta_s3 = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
        self.gamma_s2, self.beta_s2 = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))

    def _stage(self, net: _CascadeStage, fl: dict, fr: dict, level: int, lo: torch.Tensor,
               hi: torch.Tensor, num_samples: int, upper: int, groups: int):
        size = tuple(fl[f"gw{level}"].shape[2:])
        lo, hi = _upsample_disparity(lo, 2, size), _upsample_disparity(hi, 2, size)
        widen = torch.clamp(num_samples + 1 - hi + lo, min=0) / 2.0
        lo, hi = torch.clamp(lo - widen, 0, upper), torch.clamp(hi + widen, 0, upper)
        k = torch.arange(1, num_samples + 1, dtype=lo.dtype, device=lo.device).view(1, -1, 1, 1)
        uniform = lo.unsqueeze(1) + ((hi - lo) / (num_samples + 1)).unsqueeze(1) * k
        samples = torch.cat([torch.floor(lo).unsqueeze(1), uniform, torch.ceil(hi).unsqueeze(1)],
                            1).long()
        gw_l, gw_r = fl[f"gw{level}"], fr[f"gw{level}"]
        cat_l, cat_r = fl[f"concat{level}"], fr[f"concat{level}"]
        gwc = _group_mean(gw_l.unsqueeze(2) * _gather_by_disparity(gw_r, samples), groups)
        warped = _gather_by_disparity(cat_r, samples)
        n = samples.shape[1]
        hyp = samples.to(gwc.dtype)
        volume = torch.cat([gwc, cat_l.unsqueeze(2).expand_as(warped), warped, hyp.unsqueeze(1)], 1)
        prob = F.softmax(net(volume), dim=1)
        return prob, hyp, (prob * hyp).sum(1)

    def forward(self, left: torch.Tensor, right: torch.Tensor):
        h, w = left.shape[2:]
        mean, std = _channel_const(_IMAGENET_MEAN, left), _channel_const(_IMAGENET_STD, left)
        # Upstream KITTI loader: normalise, then zero-pad at the top and right (375x1242 ->
        # 384x1248); the outputs are cropped back.
        top, right_pad = -h % 32, -w % 32
        left = F.pad((left - mean) / std, (0, right_pad, top, 0))
        right = F.pad((right - mean) / std, (0, right_pad, top, 0))
        size = tuple(left.shape[2:])
        fl = self.feature_extraction(left)
        fr = self.feature_extraction(right)
        costs = []
        for level, pre, post in ((4, self.dres0, self.dres1), (5, self.dres0_5, self.dres1_5),
                                 (6, self.dres0_6, self.dres1_6)):
            d = self.maxdisp // 2 ** (level - 1)
            volume = torch.cat([_gwc_volume(fl[f"gw{level}"], fr[f"gw{level}"], d, 40),
                                _concat_volume(fl[f"concat{level}"], fr[f"concat{level}"], d)], 1)
            cost = pre(volume)
            costs.append(post(cost) + cost)
        out2_4 = self.dres3(self.combine1(*costs))
        prob = F.softmax(self.classif2(out2_4).squeeze(1), dim=1)
        levels = torch.arange(self.maxdisp // 8, dtype=prob.dtype, device=prob.device).view(1, -1, 1, 1)
        pred2_s4, lo, hi = _bounds(prob, levels, self.gamma_s3, self.beta_s3)
        prob, hyp, pred1_s3 = self._stage(self.stage_s3, fl, fr, 3, lo, hi, 14,
                                          self.maxdisp // 4 - 1, 40)
        _, lo, hi = _bounds(prob, hyp, self.gamma_s2, self.beta_s2)
        _, _, pred1_s2 = self._stage(self.stage_s2, fl, fr, 2, lo, hi, 10, self.maxdisp // 2 - 1, 20)
        outputs = (_upsample_disparity(pred1_s2, 2, size), _upsample_disparity(pred1_s3, 4, size),
                   _upsample_disparity(pred2_s4, 8, size))
        return tuple(d[:, top:, :w] for d in outputs)


class _RaftPeer(nn.Module):
    """torchvision RAFT returning the last of its 12 flow predictions."""

    def __init__(self, name: str) -> None:
        super().__init__()
        from benchmarks._torchvision import random_state_dict, state_shapes, torchvision_raft

        self.net = torchvision_raft(name, random_state_dict(state_shapes(name), seed=0))

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        return self.net(2.0 * image1 - 1.0, 2.0 * image2 - 1.0, num_flow_updates=12)[-1]


def make_peer(name: str, **kwargs) -> nn.Module:
    """A fresh peer in eval mode (random weights, BatchNorm with its running statistics);
    RAFT: torchvision's ``raft_large`` / ``raft_small`` with :mod:`benchmarks._torchvision`'s
    random weights, 12 flow updates."""
    if name in ("raft", "raft_small"):
        return _RaftPeer(name)
    peer = {"spynet": SpyNetPeer, "flownets": FlowNetSPeer, "flownetc": FlowNetCPeer,
            "cfnet": CFNetPeer}[name](**kwargs)
    return peer.eval()
