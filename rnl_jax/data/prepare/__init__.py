"""Dataset preparation: from an official download to data the trainer reads, one command per dataset.

    python -m rnl_jax.data.prepare DATASET --source DIR --out DIR
        [--format frames|arrayrecord|videos|tfds]
        [--short_side N] [--workers N] [--split N] [--annotations DIR] [--label_map FILE]
        [--retry_failed] [--no_progress]

DATASET: kinetics400, something_v1, something_v2, ucf101, hmdb51, or the trainer's config.data.name
(kinetics, something, somethingv2) (readers: `kinetics`, `something`, `ucf101`, `hmdb51`; what each
expects of the download is in their docstrings). --out is the dataset root
of the trainer (`--config.data.root`); outputs use the names of the dataset table
(`rnl_jax.data.datasets`), e.g. for Kinetics:

    OUT/kinetics/images/<class>/<video>/img_00001.jpg ..      frames (all formats but videos)
    OUT/kinetics/shuffled_{train,val}_videofolder.csv         `folder,num_frames,label` (original's reader)
    OUT/kinetics/{train,val}_videofolder.txt                  the same, space-separated (TSM label tool)
    OUT/kinetics/videos/<class>/<video>.mp4                   format videos
    OUT/kinetics/{train,val}_videos.txt                       `kinetics/videos/... num_frames label`
    OUT/kinetics/arrayrecord/{train,val}.json + shards        format arrayrecord
    OUT/kinetics/tfds/rnl_kinetics400/1.0.0/                  format tfds (data_dir: kinetics/tfds)
    OUT/kinetics/classes.txt                                  line i = class of label i
    OUT/kinetics/prepare_report_<format>.json                 what was missing or broken, and why

Modules: `core` (the run: resume, workers, lists, report), `media` (one video's work: decode, resize,
write), `annotations` (the readers' common types), one reader per dataset.
"""

from rnl_jax.data.prepare.annotations import AnnotationError, PrepareError
from rnl_jax.data.prepare.core import FORMATS, SPECS, prepare

__all__ = ['AnnotationError', 'FORMATS', 'PrepareError', 'SPECS', 'prepare']
