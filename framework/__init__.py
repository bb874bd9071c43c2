"""The framework's shared machinery: configs, command-line runs, checkpoints and reports, the
optimisation loop, pictures and progress."""
import os

# OpenCV's FFmpeg backend prints its own parse errors ("moov atom not found") before the readers'
# error, which names the file and what to do; keep them off the screen unless a user asks for them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
