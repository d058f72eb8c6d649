"""Flax modules: temporal shift, region non-local attention, ResNet backbone, TSN head."""

from rnl_jax.models.rnl import AttentionSettings, ChannelGate, RegionNonLocal, region_attention
from rnl_jax.models.resnet import ResNet
from rnl_jax.models.temporal_shift import temporal_shift
from rnl_jax.models.tsn import TSN, Architecture, build_model

__all__ = [
    'TSN',
    'Architecture',
    'build_model',
    'ResNet',
    'RegionNonLocal',
    'ChannelGate',
    'AttentionSettings',
    'region_attention',
    'temporal_shift',
]
