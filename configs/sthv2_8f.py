"""Something-Something V2, RNL TSM-R50, 8 frames: the V1 recipe on the V2 dataset table entry."""
from configs import sthv1_8f


def get_config():
  config = sthv1_8f.get_config()
  config.data.name = 'somethingv2'
  return config
