"""Config -> model: bad values fail with the key's name before anything compiles."""
import pytest

from configs import default, tiny
from rnl_jax import config as config_lib


@pytest.mark.parametrize('key,value,message', [
    ('model.dtype', 'fp8', 'config.model.dtype'),
    ('model.dropout', 1.5, 'config.model.dropout'),
    ('model.query_chunk', -1, 'config.model.query_chunk'),
    ('model.variant', 'i3d', "variant='i3d'"),
    ('model.depth', 42, 'depth=42'),
    ('model.num_classes', 0, 'num_classes=0'),
    ('num_segments', 0, 'config.num_segments'),
])
def test_bad_values_name_the_key(key, value, message):
  config = tiny.get_config()
  section, _, name = key.rpartition('.')
  setattr(config[section] if section else config, name, value)
  with pytest.raises(ValueError, match=message):
    config_lib.model_from_config(config)


def test_default_is_the_original_rnl_r50():
  model = config_lib.model_from_config(default.get_config())
  assert (model.depth, model.shift_place, model.non_local, model.num_classes) == (50, 'blockres', True, 400)
  assert model.normalize_input  # the host ships uint8 pixels
