"""The protocol by which a dataset lists its videos: ``videos()`` -> ``{video id: VideoSpan}``.

Test-time adaptation callbacks refine whole videos, and the DDP test sampler
(``datamodules.sampling.VideoShardSampler``) gives each rank whole videos, so both need to know
which dataset items make up each video. Flow, tracking, footage and synthetic datasets all list
theirs this way; a dataset without ``videos()`` is treated as having none.
"""
from __future__ import annotations

from typing import Any, NamedTuple


class VideoSpan(NamedTuple):
    name: str
    indices: list[int]  # the video's dataset indices, in frame order


def listed_videos(dataset: Any) -> dict[int, VideoSpan]:
    """The dataset's ``videos()`` ({video: VideoSpan}); empty where it lists none."""
    listing = getattr(dataset, "videos", None)
    return listing() if callable(listing) else {}
