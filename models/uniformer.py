"""UniFormer video backbone (Li et al., "UniFormer: Unified Transformer for Efficient Spatiotemporal
Representation Learning", ICLR 2022), as used by CoReEcho.

Four stages: two of local blocks (depthwise 3D convolutions act as "attention") and two of global multi-head
self-attention blocks. Every stage starts with a strided 3D patch embedding. Parameter names and registration
order follow the public Kinetics-400 checkpoints (``uniformer_small_k400_16x8.pth``): they load strictly.

``forward(x)``: ``[B, 3, T, H, W]`` -> ``(head(feature), feature)``, the final BatchNorm'ed map averaged over T, H, W.

``depthwise='conv2d'`` computes the depthwise 3D convolutions (``pos_embed`` and the local ``attn``) as
sums over temporal taps of depthwise 2D convolutions; same parameters and results, faster on GPUs (see
``DepthwiseConv3d``). ``'auto'`` does so only for the 5x5x5 ``attn`` convolutions (3.1-3.7x faster per layer
on an H100); the 3x3x3 ``pos_embed`` ones stay nn.Conv3d (conv2d: 0.67-1.2x). ``'conv3d'`` (default) keeps the
released numerics.
"""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from timm.layers import DropPath, Mlp, trunc_normal_

__all__ = ['UniFormer', 'DepthwiseConv3d', 'DEPTHWISE_IMPLS', 'DEPTHWISE_CHOICES', 'depthwise_conv3d_by_frames',
           'uniformer_small', 'uniformer_base', 'uniformer_tiny']

DEPTHWISE_IMPLS = ('conv3d', 'conv2d')
DEPTHWISE_CHOICES = DEPTHWISE_IMPLS + ('auto',)  # auto: conv2d for kernels >= AUTO_CONV2D_KERNEL, else conv3d
AUTO_CONV2D_KERNEL = 5  # on an H100, conv2d won 3.1-3.7x at k5 but lost up to 0.67x at k3 (benchmarks/RESULTS.md)


def _to_frames(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, C, T, H, W] -> [T*B, C, H, W] channels_last in `dtype`, in one copy. Time-major, so that any run
    of frames is a view."""
    B, C, T, H, W = x.shape
    # .to() casts into contiguous memory; with a matching dtype it returns the view and reshape copies.
    x = x.permute(2, 0, 3, 4, 1).to(dtype, memory_format=torch.contiguous_format)
    return x.reshape(T * B, H, W, C).permute(0, 3, 1, 2)


def _from_frames(frames: torch.Tensor, batch: int, dtype: torch.dtype,
                 memory_format: torch.memory_format) -> torch.Tensor:
    """Inverse of `_to_frames`, cast to `dtype` and laid out as `memory_format` in one copy."""
    TB, C, H, W = frames.shape
    x = frames.reshape(TB // batch, batch, C, H, W).permute(1, 2, 0, 3, 4)
    # .to() copies into `memory_format` when it casts, but returns x itself when the dtype matches: then
    # .contiguous() makes the one copy. (torch.empty(...).copy_(x) gives zero gradients under torch 2.11's
    # torch.compile when it is an autograd.Function's output.)
    return x.to(dtype=dtype, memory_format=memory_format).contiguous(memory_format=memory_format)


def _add_frames(acc, y: torch.Tensor, start: int, n_frames: int, batch: int, acc_dtype: torch.dtype):
    """acc += y, y holding frames start.. of an [n_frames * batch, C, H, W] sum kept in `acc_dtype`
    (fp32 for bf16/fp16 inputs: the temporal sum is not rounded at every tap). acc=None starts the sum."""
    if acc is None:
        if start == 0 and y.shape[0] == n_frames * batch:
            return y.to(acc_dtype)
        acc = torch.zeros((n_frames * batch, *y.shape[1:]), dtype=acc_dtype, device=y.device)
        acc = acc.contiguous(memory_format=torch.channels_last)
    acc[start * batch:start * batch + y.shape[0]] += y
    return acc


class _DepthwiseConv3dByFrames(torch.autograd.Function):
    """Depthwise 3D convolution (stride 1, zero padding) as a sum over its kt temporal taps of depthwise
    2D convolutions on frames, with time folded into the batch. Tap dt of output frame t reads input
    frame t + dt - pt; taps that would read only padding are skipped. The convolutions run in the dtype
    of `weight` (x is cast on the way in), the sums in fp32; x's gradient comes back in x's dtype."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        B, C, T = x.shape[:3]
        kt, pt, spatial_padding = weight.shape[2], padding[0], padding[1:]
        t_out = T + 2 * pt - kt + 1
        acc_dtype = torch.promote_types(weight.dtype, torch.float32)
        frames = _to_frames(x, weight.dtype)
        acc = None
        for dt in _tap_order(kt, pt):
            lo, hi = max(0, pt - dt), min(t_out, T + pt - dt)  # output frames this tap reaches
            if lo >= hi:
                continue
            src = lo + dt - pt
            # The first tap (the centre one) covers every output frame: it adds the bias once.
            y = F.conv2d(frames[src * B:(src + hi - lo) * B], weight[:, :, dt], bias if acc is None else None,
                         padding=spatial_padding, groups=C)
            acc = _add_frames(acc, y, lo, t_out, B, acc_dtype)
        ctx.save_for_backward(frames, weight)
        ctx.has_bias, ctx.padding, ctx.batch, ctx.t_in = bias is not None, padding, B, T
        ctx.x_dtype, ctx.memory_format = x.dtype, _memory_format(x)
        return _from_frames(acc, B, weight.dtype, ctx.memory_format)

    @staticmethod
    def backward(ctx, grad_out):
        # Every gradient is computed: ctx.needs_input_grad can read False under torch.compile (pytorch#159299),
        # and in training all three are needed anyway.
        frames, weight = ctx.saved_tensors
        B, T, (pt, *spatial_padding) = ctx.batch, ctx.t_in, ctx.padding
        C, kt = weight.shape[0], weight.shape[2]
        acc_dtype = torch.promote_types(frames.dtype, torch.float32)
        g = _to_frames(grad_out, frames.dtype)
        t_out = g.shape[0] // B
        grad_frames, grad_weight = None, torch.zeros_like(weight)
        for dt in _tap_order(kt, pt):
            lo, hi = max(0, pt - dt), min(t_out, T + pt - dt)
            if lo >= hi:
                continue
            src = lo + dt - pt
            grad_tap, grad_tap_weight, _ = torch.ops.aten.convolution_backward(
                g[lo * B:hi * B], frames[src * B:(src + hi - lo) * B], weight[:, :, dt], None, [1, 1],
                spatial_padding, [1, 1], False, [0, 0], C, [True, True, False])
            grad_weight[:, :, dt] = grad_tap_weight
            grad_frames = _add_frames(grad_frames, grad_tap, src, T, B, acc_dtype)
        grad_x = _from_frames(grad_frames, B, ctx.x_dtype, ctx.memory_format)
        grad_bias = g.sum((0, 2, 3), dtype=acc_dtype).to(frames.dtype) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias, None


def _tap_order(kt: int, pt: int) -> list[int]:
    # The centre tap first: it reaches every output frame, so the sum starts from it without a zero fill.
    return [pt] + [dt for dt in range(kt) if dt != pt]


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def depthwise_conv3d_by_frames(x: torch.Tensor, weight: torch.Tensor, bias, padding) -> torch.Tensor:
    """``F.conv3d(x, weight, bias, padding=padding, groups=C)`` (stride 1) computed with depthwise 2D
    convolutions; under autocast it runs in the autocast dtype like conv3d would, with the temporal
    sum (and the input gradient's) accumulated in fp32. Output in x's memory format."""
    kt, pt = weight.shape[2], padding[0]
    if 2 * pt > kt - 1:
        raise ValueError(f'temporal padding {pt} > (kernel {kt} - 1) / 2 is not supported')
    dtype = x.dtype
    if torch.is_autocast_enabled(x.device.type) and dtype != torch.float64:
        dtype = torch.get_autocast_dtype(x.device.type)  # what autocast would run conv3d in
    weight = weight.to(dtype)
    bias = bias.to(dtype) if bias is not None else None
    return _DepthwiseConv3dByFrames.apply(x, weight, bias, tuple(padding))


class DepthwiseConv3d(nn.Conv3d):
    """Depthwise 3D convolution (one k x k x k filter per channel, stride 1, padding k // 2).

    ``impl='conv3d'`` runs ``nn.Conv3d`` (the released numerics). ``impl='conv2d'`` computes the same
    convolution as a sum over the k temporal taps of depthwise 2D convolutions with time folded into the
    batch (``depthwise_conv3d_by_frames``): on GPUs cuDNN's channels_last depthwise 2D kernels are several
    times faster than PyTorch's native depthwise 3D ones (cuDNN is not used for those). The parameters
    are nn.Conv3d's, so checkpoints load into either. ``impl='auto'`` picks conv2d for k >= 5, else conv3d.
    """

    def __init__(self, dim: int, kernel_size: int, impl: str = 'conv3d'):
        super().__init__(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        if impl not in DEPTHWISE_CHOICES:
            raise ValueError(f'unknown depthwise implementation {impl!r}; choose one of {DEPTHWISE_CHOICES}')
        if impl == 'auto':
            impl = 'conv2d' if kernel_size >= AUTO_CONV2D_KERNEL else 'conv3d'
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == 'conv2d':
            return depthwise_conv3d_by_frames(x, self.weight, self.bias, self.padding)
        if x.device.type == 'cpu':
            # PyTorch's CPU weight gradient of a bf16 depthwise Conv3d in channels_last layout (input or
            # weight) reads uninitialised memory: a wrong or NaN gradient (tests/models/test_depthwise.py reproduces
            # it). The contiguous layout avoids that kernel. A [C, 1, k, k, k] weight moved to channels_last
            # still counts as contiguous (its channel dim has size 1) but keeps channels_last strides, which
            # select that kernel: hence a fresh copy with plain strides.
            weight = self.weight.clone(memory_format=torch.contiguous_format)
            return F.conv3d(x.contiguous(), weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, impl={self.impl}'


class ConvMlp3d(nn.Module):
    """Channel MLP on a [B, C, T, H, W] map, written with 1x1x1 convolutions."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Conv3d(dim, hidden_dim, kernel_size=1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv3d(hidden_dim, dim, kernel_size=1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class PatchEmbed3d(nn.Module):
    """Strided Conv3d followed by a LayerNorm over channels; keeps the [B, C, T, H, W] layout."""

    def __init__(self, in_chans: int, embed_dim: int, kernel_size, stride, padding=0):
        super().__init__()
        # `norm` is registered before `proj` to match the checkpoint's key order.
        # Default eps (1e-5) here, unlike the 1e-6 of the attention blocks.
        self.norm = nn.LayerNorm(embed_dim)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        # LayerNorm works on the last dim: go channels-last and back.
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3).contiguous()


class LocalBlock(nn.Module):
    """UniFormer "CBlock": local token affinity learned by a depthwise 5x5x5 convolution."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0,
                 depthwise: str = 'conv3d'):
        super().__init__()
        # Registration order (pos_embed, norm1, conv1, conv2, attn, norm2, mlp) matches the checkpoint.
        self.pos_embed = DepthwiseConv3d(dim, 3, depthwise)
        self.norm1 = nn.BatchNorm3d(dim)
        self.conv1 = nn.Conv3d(dim, dim, 1)
        self.conv2 = nn.Conv3d(dim, dim, 1)
        self.attn = DepthwiseConv3d(dim, 5, depthwise)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.BatchNorm3d(dim)
        self.mlp = ConvMlp3d(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class Attention(nn.Module):
    """Multi-head self-attention over tokens [B, N, C], computed by torch's fused SDPA."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        assert dim % num_heads == 0, f'dim {dim} is not divisible by num_heads {num_heads}'
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        # Default scale is head_dim ** -0.5, the one UniFormer uses.
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class GlobalBlock(nn.Module):
    """UniFormer "SABlock": conv position encoding, then a pre-norm transformer block on all T*H*W tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0, depthwise: str = 'conv3d'):
        super().__init__()
        self.pos_embed = DepthwiseConv3d(dim, 3, depthwise)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        B, C, T, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # [B, T*H*W, C]
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens)))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return tokens.transpose(1, 2).reshape(B, C, T, H, W)


class UniFormer(nn.Module):
    """UniFormer for video clips [B, 3, T, H, W].

    Args:
        depths: number of blocks per stage (stages 1-2 local, 3-4 global).
        embed_dims: channels per stage.
        head_dim: channels per attention head in the global stages.
        mlp_ratio: hidden/in ratio of every MLP.
        num_classes: outputs of the linear ``head``.
        drop_rate: dropout after the stem and inside MLPs / attention projection (train only).
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic-depth rate, increased linearly over all blocks up to this value.
        use_checkpoint: recompute each block in the backward pass (saves activation memory).
        depthwise: 'conv3d' (released), 'conv2d' (same maths, faster on GPUs) or 'auto' (conv2d for the
            5x5x5 convolutions only): how the depthwise 3D convolutions run, see ``DepthwiseConv3d``. The
            state_dict is the same either way.
    """

    def __init__(
            self,
            depths: Sequence[int] = (3, 4, 8, 3),
            embed_dims: Sequence[int] = (64, 128, 320, 512),
            head_dim: int = 64,
            mlp_ratio: float = 4.0,
            num_classes: int = 400,
            in_chans: int = 3,
            qkv_bias: bool = True,
            drop_rate: float = 0.0,
            attn_drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
            use_checkpoint: bool = False,
            depthwise: str = 'conv3d',
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = embed_dims[-1]
        self.use_checkpoint = use_checkpoint

        # Stem: frames /2 (kernel 3, stride 2), space /4; later stages halve space only.
        self.patch_embed1 = PatchEmbed3d(in_chans, embed_dims[0], (3, 4, 4), (2, 4, 4), (1, 0, 0))
        self.patch_embed2 = PatchEmbed3d(embed_dims[0], embed_dims[1], (1, 2, 2), (1, 2, 2))
        self.patch_embed3 = PatchEmbed3d(embed_dims[1], embed_dims[2], (1, 2, 2), (1, 2, 2))
        self.patch_embed4 = PatchEmbed3d(embed_dims[2], embed_dims[3], (1, 2, 2), (1, 2, 2))
        self.pos_drop = nn.Dropout(drop_rate)

        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()  # stochastic depth decay rule
        starts = [sum(depths[:i]) for i in range(4)]
        self.blocks1 = nn.ModuleList([
            LocalBlock(embed_dims[0], mlp_ratio, drop_rate, dpr[starts[0] + i], depthwise) for i in range(depths[0])])
        self.blocks2 = nn.ModuleList([
            LocalBlock(embed_dims[1], mlp_ratio, drop_rate, dpr[starts[1] + i], depthwise) for i in range(depths[1])])
        self.blocks3 = nn.ModuleList([
            GlobalBlock(embed_dims[2], embed_dims[2] // head_dim, mlp_ratio, qkv_bias, drop_rate,
                        attn_drop_rate, dpr[starts[2] + i], depthwise) for i in range(depths[2])])
        self.blocks4 = nn.ModuleList([
            GlobalBlock(embed_dims[3], embed_dims[3] // head_dim, mlp_ratio, qkv_bias, drop_rate,
                        attn_drop_rate, dpr[starts[3] + i], depthwise) for i in range(depths[3])])
        self.norm = nn.BatchNorm3d(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # Same scheme as the original: truncated-normal linears, unit LayerNorms, torch defaults elsewhere.
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _run_stage(self, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for blk in blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Final normalised feature map [B, C, T/2, H/32, W/32] (spatial sizes floored)."""
        x = self.pos_drop(self.patch_embed1(x))
        x = self._run_stage(self.blocks1, x)
        x = self._run_stage(self.blocks2, self.patch_embed2(x))
        x = self._run_stage(self.blocks3, self.patch_embed3(x))
        x = self._run_stage(self.blocks4, self.patch_embed4(x))
        return self.norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled feature [B, C]: the feature map averaged over T, H and W."""
        return self.forward_feature_map(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.forward_features(x)
        return self.head(feature), feature


def uniformer_small(num_classes: int = 400, **kwargs) -> UniFormer:
    """UniFormer-S (21.4M parameters), the CoReEcho backbone. Dropout 0.1 as in the original builder."""
    kwargs.setdefault('drop_rate', 0.1)
    return UniFormer(depths=(3, 4, 8, 3), embed_dims=(64, 128, 320, 512), head_dim=64,
                     num_classes=num_classes, **kwargs)


def uniformer_base(num_classes: int = 400, **kwargs) -> UniFormer:
    """UniFormer-B (same widths as -S, deeper). Dropout 0.3 as in the original builder."""
    kwargs.setdefault('drop_rate', 0.3)
    return UniFormer(depths=(5, 8, 20, 7), embed_dims=(64, 128, 320, 512), head_dim=64,
                     num_classes=num_classes, **kwargs)


def uniformer_tiny(num_classes: int = 400, **kwargs) -> UniFormer:
    """A toy UniFormer for CPU demos and tests: dims (16, 32, 64, 128), one block per stage.

    This is NOT the paper's model (CoReEcho uses ``uniformer_small``) and no pretrained weights exist for it.
    """
    return UniFormer(depths=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128), head_dim=16,
                     num_classes=num_classes, **kwargs)
