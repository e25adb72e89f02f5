"""UniFormer video backbone (Li et al., "UniFormer: Unified Transformer for Efficient
Spatiotemporal Representation Learning", ICLR 2022), as used by CoReEcho.

Four stages: two of local blocks (depthwise 3D convolutions act as "attention") and two of
global multi-head self-attention blocks. Every stage starts with a strided 3D patch embedding.
Parameter names and registration order follow the public Kinetics-400 checkpoints
(e.g. ``uniformer_small_k400_16x8.pth``), so those load with ``strict=True``.

``forward(x)`` takes ``[B, 3, T, H, W]`` and returns ``(head(feature), feature)`` where
``feature`` is the final BatchNorm'ed map averaged over T, H and W.
"""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from timm.layers import DropPath, Mlp, trunc_normal_

__all__ = ['UniFormer', 'uniformer_small', 'uniformer_base', 'uniformer_tiny']


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

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        # Registration order (pos_embed, norm1, conv1, conv2, attn, norm2, mlp) matches the checkpoint.
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm3d(dim)
        self.conv1 = nn.Conv3d(dim, dim, 1)
        self.conv2 = nn.Conv3d(dim, dim, 1)
        self.attn = nn.Conv3d(dim, dim, 5, padding=2, groups=dim)
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
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
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
            LocalBlock(embed_dims[0], mlp_ratio, drop_rate, dpr[starts[0] + i]) for i in range(depths[0])])
        self.blocks2 = nn.ModuleList([
            LocalBlock(embed_dims[1], mlp_ratio, drop_rate, dpr[starts[1] + i]) for i in range(depths[1])])
        self.blocks3 = nn.ModuleList([
            GlobalBlock(embed_dims[2], embed_dims[2] // head_dim, mlp_ratio, qkv_bias, drop_rate,
                        attn_drop_rate, dpr[starts[2] + i]) for i in range(depths[2])])
        self.blocks4 = nn.ModuleList([
            GlobalBlock(embed_dims[3], embed_dims[3] // head_dim, mlp_ratio, qkv_bias, drop_rate,
                        attn_drop_rate, dpr[starts[3] + i]) for i in range(depths[3])])
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
