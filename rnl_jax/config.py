"""From an ml_collections config to model objects, validating values before anything compiles."""
import jax.numpy as jnp

from rnl_jax.models import TSN, Architecture, build_model

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def model_from_config(config) -> TSN:
  """The TSN described by `config.model`; a bad value raises ValueError naming its key."""
  m = config.model
  if m.dtype not in DTYPES:
    raise ValueError(f'config.model.dtype={m.dtype!r}: expected one of {sorted(DTYPES)}')
  if not 0.0 <= m.dropout < 1.0:
    raise ValueError(f'config.model.dropout={m.dropout}: expected 0 <= dropout < 1')
  if m.query_chunk < 0:
    raise ValueError(f'config.model.query_chunk={m.query_chunk}: expected 0 (plain) or > 0')
  if config.num_segments < 1:
    raise ValueError(f'config.num_segments={config.num_segments}: expected >= 1')
  try:
    arch = Architecture.from_variant(m.variant, m.num_classes, m.depth, shift_div=m.shift_div)
  except ValueError as e:
    raise ValueError(f'config.model: {e}') from None
  return build_model(arch, dropout=m.dropout, query_chunk=m.query_chunk or None,
                     normalize_input=True, dtype=DTYPES[m.dtype])
