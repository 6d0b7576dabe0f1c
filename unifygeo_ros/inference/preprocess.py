"""Input checks and the image -> network-input path of the localizer.

* Images are ``H x W x 3`` uint8 RGB of any size; a panorama must be 2:1 (within one pixel
  of width = 2 x height). A uniform frame (a covered lens, an all-black or saturated
  exposure) is refused: the network would still rank tiles and place the camera somewhere.
* A panorama is resized to the model's ``H x W`` (area averaging when shrinking, as the
  training data was). A pinhole image is first shrunk to about twice the panorama's angular
  resolution (to avoid aliasing; a calibrated camera's intrinsics are scaled with it) and then
  placed in the panorama frame by :func:`unifygeo_ros.inference.fov.camera_to_panorama` with
  its column mask. A calibrated camera's image must have the size of its intrinsics.
* A camera rig's images (:class:`~unifygeo_ros.types.Rig`) are each shrunk as a pinhole
  image is and composed into one panorama in the rig's base frame with the union of their
  column masks (:func:`unifygeo_ros.inference.rig.compose_rig`).
* With a known heading the panorama is turned to face tile-up (grid north, ENU yaw 90 deg in
  the map frame): a pinhole image is placed directly at its bearing, a panorama is rotated
  with :func:`unifygeo_ros.conventions.rotate_panorama`.
* :func:`image_detail` measures how much fine detail a frame holds (one of the abstention's
  features: a defocused, fogged or heavily blurred frame has almost none).
"""

from __future__ import annotations

import numpy as np

from ..conventions import enu_yaw_to_compass, rotate_panorama
from ..types import Camera, Intrinsics, LocalizationError, Rig

IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), np.float32)   # as model.unifygeo (kept torch-free here)
IMAGENET_STD = np.array((0.229, 0.224, 0.225), np.float32)
MIN_SIDE = 16
MAX_PIXELS = 100_000_000
MIN_CONTRAST = 2.0      # grey levels (0-255): below this standard deviation a frame shows nothing


#: image_detail looks at the frame shrunk to this width (the small model's panorama width)
DETAIL_WIDTH = 256


def image_detail(image: np.ndarray) -> float:
    """Fine detail of a frame: the mean absolute Laplacian of its grey levels, shrunk to
    :data:`DETAIL_WIDTH` pixels wide (area averaging), over their standard deviation plus one
    grey level. About 0.2-0.4 for sharp street views, under 0.05 for a heavy blur; a uniform
    frame gives 0."""
    import cv2

    h, w = image.shape[:2]
    width = min(DETAIL_WIDTH, w)
    height = max(2, int(round(h * width / w)))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) if (width, height) != (w, h) else image
    grey = small.astype(np.float32).mean(axis=2)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT)
    return float(np.abs(lap).mean() / (grey.std() + 1.0))


def normalize_images(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 normalised with the ImageNet mean / std."""
    x = np.asarray(images, dtype=np.float32) * (1.0 / 255.0)
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def check_image(image, camera: Camera) -> np.ndarray:
    """Validate a frame; returns it as a uint8 array. Raises :class:`LocalizationError`."""
    expected = "an H x W x 3 uint8 RGB image"
    if not isinstance(image, np.ndarray):
        raise LocalizationError(f"image: expected {expected} (numpy array), got {type(image).__name__}")
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise LocalizationError(f"image: contains NaN or infinite pixels; expected {expected} (finite values 0-255)")
    if image.ndim != 3 or image.shape[2] != 3:
        raise LocalizationError(f"image: expected {expected}, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise LocalizationError(f"image: expected {expected}, got dtype {image.dtype} (convert 16-bit or float "
                                f"images to 8-bit RGB first)")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE or h * w > MAX_PIXELS:
        raise LocalizationError(f"image: {w} x {h} pixels; expected at least {MIN_SIDE} px per side and at most "
                                f"{MAX_PIXELS:,} pixels")
    if camera.model == "panorama" and abs(w - 2 * h) > 1:
        raise LocalizationError(f"panorama: {w} x {h} pixels is not 2:1; expected an equirectangular 360 x 180 "
                                f"degree image with width = 2 x height (use Camera('pinhole', hfov_deg=...) for a "
                                f"pinhole image)")
    intr = camera.intrinsics
    if intr is not None and (w, h) != (intr.width, intr.height):
        raise LocalizationError(f"image: {w} x {h} pixels, but the camera's intrinsics (CameraInfo) are for "
                                f"{intr.width} x {intr.height}; expected images of the calibrated size")
    step = max(1, min(h, w) // 64)      # about 64 x 128 samples are plenty for a contrast check
    contrast = float(image[::step, ::step].mean(axis=2, dtype=np.float32).std())
    if contrast < MIN_CONTRAST:
        raise LocalizationError(f"image: no content (grey-level standard deviation {contrast:.2f}, expected at "
                                f"least {MIN_CONTRAST:g}); a uniform frame (covered lens, black or saturated "
                                f"exposure, a failing driver) cannot be localized")
    return image


def check_rig_images(images, rig: Rig) -> list[np.ndarray]:
    """Validate a camera rig's frame: one image per camera, each as :func:`check_image` wants
    it for its camera. Raises :class:`LocalizationError` naming the camera."""
    if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
        raise LocalizationError(f"camera rig: expected a list of {len(rig.cameras)} images (one per camera), "
                                f"got {type(images).__name__}")
    if len(images) != len(rig.cameras):
        raise LocalizationError(f"camera rig: expected {len(rig.cameras)} images (one per camera), got "
                                f"{len(images)}")
    out = []
    for i, (img, cam) in enumerate(zip(images, rig.cameras)):
        try:
            out.append(check_image(img, cam))
        except LocalizationError as exc:
            raise LocalizationError(f"camera rig, camera {i} (yaw {rig.yaws_deg[i]:g} deg): {exc}") from None
    return out


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    if img.shape[1] == width and img.shape[0] == height:
        return np.ascontiguousarray(img)
    shrink = img.shape[1] > width or img.shape[0] > height
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _fit_pinhole(image: np.ndarray, camera: Camera, pano_width: int) -> tuple[np.ndarray, Intrinsics]:
    """A pinhole image shrunk to about twice the panorama's angular resolution (when larger),
    and its intrinsics at that size."""
    h, w = image.shape[:2]
    intr = camera.intrinsics
    hfov = intr.hfov_deg() if intr is not None else float(camera.hfov_deg)
    target_w = int(np.ceil(2.0 * pano_width * hfov / 360.0))
    if w > target_w:
        scale = target_w / w
        image = _resize(image, target_w, max(2, int(round(h * scale))))
    h2, w2 = image.shape[:2]
    return image, (Intrinsics.ideal(w2, h2, hfov) if intr is None else intr.scaled(w2, h2))


def ground_input(image: np.ndarray | list, camera: Camera | Rig, ground_size: tuple[int, int],
                 heading_deg: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The model's panorama (H, W, 3) uint8 and column mask (W,) float32 for one frame (for a
    :class:`Rig`: ``image`` is the list of its images).

    With ``heading_deg`` (ENU yaw of the camera's forward direction in the map frame) the
    result faces grid north (tile-up); without, it faces the camera's forward direction."""
    from .fov import camera_to_panorama

    ph, pw = ground_size
    # The forward direction sits at its compass bearing relative to the tile-up panorama's.
    offset = 0.0 if heading_deg is None else float(enu_yaw_to_compass(heading_deg))
    if offset > 180.0:
        offset -= 360.0
    if isinstance(camera, Rig):
        from .rig import compose_rig

        fitted = [_fit_pinhole(img, cam, pw) for img, cam in zip(image, camera.cameras)]
        return compose_rig([f[0] for f in fitted], camera.cameras, camera.yaws_deg, (ph, pw),
                           forward_offset_deg=offset, intrinsics=[f[1] for f in fitted])
    if camera.model == "pinhole":
        image, intr = _fit_pinhole(image, camera, pw)
        pano, mask = camera_to_panorama(image, intr, (ph, pw), axis_offset_deg=offset,
                                        pitch_deg=float(camera.pitch_deg), roll_deg=float(camera.roll_deg))
        return pano, mask
    pano = _resize(image, pw, ph)
    mask = np.ones(pw, np.float32)
    if heading_deg is not None:
        # Turn clockwise by the forward compass bearing: the result faces grid north.
        pano = rotate_panorama(pano, -float(enu_yaw_to_compass(heading_deg)))
    return pano, mask
