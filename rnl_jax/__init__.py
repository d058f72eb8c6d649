"""rnl-jax: Region-based Non-local TSM video classifiers in JAX/Flax.

    model, variables = rnl_jax.load_checkpoint('ckpt_dir')   # or an original .pth.tar
    logits = model.apply(variables, clips, train=False)      # [N, T, H, W, 3] -> [N, K]
"""
from rnl_jax.checkpoint import load_checkpoint, save_checkpoint
from rnl_jax.models import TSN, Architecture, build_model

__all__ = ['load_checkpoint', 'save_checkpoint', 'build_model', 'Architecture', 'TSN']
