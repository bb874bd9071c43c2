"""Pure-torch pose geometry: skeletons, cameras, rotations, alignment, bones."""
from geometry.bones import bone_lengths, bone_vectors
from geometry.camera import (
    denormalize_screen,
    normalize_screen,
    perspective_project,
    project_root_relative,
    weak_perspective_project,
)
from geometry.procrustes import procrustes_align, scale_align
from geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rotation_6d,
    rotate_about_root,
    rotation_6d_to_matrix,
    rotation_x,
    rotation_y,
    rotation_z,
    sample_view_rotations,
)
from geometry.skeletons import (
    COCO17,
    H36M17,
    MPI_INF_3DHP17,
    MPI_INF_3DHP_TO_H36M,
    SKELETONS,
    Skeleton,
    flip_horizontal,
    get_skeleton,
)

__all__ = [
    "COCO17", "H36M17", "MPI_INF_3DHP17", "MPI_INF_3DHP_TO_H36M", "SKELETONS", "Skeleton",
    "axis_angle_to_matrix", "bone_lengths", "bone_vectors", "denormalize_screen", "flip_horizontal",
    "get_skeleton", "matrix_to_axis_angle", "matrix_to_rotation_6d", "normalize_screen",
    "perspective_project", "procrustes_align", "project_root_relative", "rotate_about_root",
    "rotation_6d_to_matrix", "rotation_x", "rotation_y", "rotation_z", "sample_view_rotations",
    "scale_align", "weak_perspective_project",
]
