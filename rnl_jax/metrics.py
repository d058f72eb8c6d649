"""Video-level classification metrics from per-view logits, accumulated by video index.

Scores of all views of a video are averaged (the original fuses raw logits by the mean over views,
docs/original.md §6); rows are attributed by `video_index`, never by batch position, and padded rows
(`mask` False) are ignored, so results do not depend on batch size, device or process count.
"""

import numpy as np


class VideoScores:
  """Sums of per-view logits and view counts per video."""

  def __init__(self, num_videos, num_classes):
    self.sums = np.zeros((num_videos, num_classes), np.float64)
    self.counts = np.zeros(num_videos, np.int64)
    self.labels = np.full(num_videos, -1, np.int64)

  def add(self, logits, labels, video_index, mask):
    """logits [B, K], labels/video_index/mask [B] (numpy)."""
    mask = np.asarray(mask, bool)
    idx = np.asarray(video_index)[mask]
    lab = np.asarray(labels)[mask]
    known = self.labels[idx]
    clash = (known >= 0) & (known != lab)
    if clash.any():
      v = int(idx[clash][0])
      raise ValueError(f'video {v} seen with labels {known[clash][0]} and {lab[clash][0]}')
    self.labels[idx] = lab
    np.add.at(self.sums, idx, np.asarray(logits, np.float64)[mask])
    np.add.at(self.counts, idx, 1)

  def scores(self):
    """Mean logits [num_videos, K] over each video's views (NaN rows for unseen videos)."""
    with np.errstate(invalid='ignore', divide='ignore'):
      return self.sums / self.counts[:, None]

  def check_complete(self, views_per_video):
    """Every video seen exactly `views_per_video` times (ValueError naming the first that was not)."""
    bad = np.flatnonzero(self.counts != views_per_video)
    if bad.size:
      v = int(bad[0])
      raise ValueError(
          f'video {v} has {self.counts[v]} views, expected {views_per_video} '
          f'({bad.size} videos affected)'
      )

  def metrics(self):
    """top1, top5, mean_class_acc (mean of per-class recall over classes present), num_videos."""
    seen = self.counts > 0
    return classification_metrics(self.scores()[seen], self.labels[seen])


def classification_metrics(scores, labels):
  """Metrics of video scores [N, K] against labels [N]; top-k ties broken by class index."""
  scores, labels = np.asarray(scores), np.asarray(labels)
  n, k = scores.shape if scores.ndim == 2 else (0, 0)
  if n == 0:
    return {
        'top1': float('nan'),
        'top5': float('nan'),
        'mean_class_acc': float('nan'),
        'num_videos': 0,
    }
  order = np.argsort(-scores, axis=1, kind='stable')
  top1 = order[:, 0] == labels
  top5 = (order[:, : min(5, k)] == labels[:, None]).any(axis=1)
  confusion = np.zeros((k, k), np.int64)
  np.add.at(confusion, (labels, order[:, 0]), 1)
  per_class = confusion.sum(axis=1)
  present = per_class > 0
  mean_class = float(np.mean(np.diag(confusion)[present] / per_class[present]))
  return {
      'top1': float(top1.mean()),
      'top5': float(top5.mean()),
      'mean_class_acc': mean_class,
      'num_videos': int(n),
  }
