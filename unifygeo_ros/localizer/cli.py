"""``unifygeo localize``: one image (or one camera rig's images) against a database.

Exit status: 0 a fix; 3 no fix (the localizer judged the frame no evidence of where the
camera is: ``"fix": false`` and ``"no_fix_reason"`` in the output); 2 bad input (an
unreadable image or database, a panorama that is not 2:1, a uniform frame, bad options)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import CommandError, add_json_flag, emit
from ..options import add_cli_options

#: exit status of ``unifygeo localize`` for a frame that is no evidence (no fix)
EXIT_NO_FIX = 3


def register(sub, bench_sub) -> None:
    p = sub.add_parser("localize", help="localize one image (PNG/JPEG) against a database; exit status 0 a fix, "
                                        f"{EXIT_NO_FIX} no fix (the frame is no evidence of where the camera is: "
                                        "noise, blur, upside down...), 2 bad input")
    p.add_argument("image", nargs="?", help="a panorama (equirectangular, 2:1) or, with --fov or --camera-info, a "
                                            "pinhole or fisheye image (none with --rig-camera)")
    p.add_argument("--db", required=True, help="database folder (unifygeo build-db)")
    camera = p.add_mutually_exclusive_group()
    camera.add_argument("--fov", type=float, help="idealised pinhole camera (square pixels, principal point at the "
                                                  "centre, no distortion): horizontal field of view in degrees")
    camera.add_argument("--camera-info", metavar="YAML",
                        help="calibrated pinhole or fisheye camera: its CameraInfo as a YAML file (as written by "
                             "ROS camera_calibration: image_width, image_height, camera_matrix.data, "
                             "distortion_model, distortion_coefficients.data; or the CameraInfo fields width, "
                             "height, k, distortion_model, d); distortion models plumb_bob, rational_polynomial, "
                             "equidistant; the image must have the calibrated size")
    p.add_argument("--rig-camera", action="append", metavar="IMAGE,YAW[,FOV|,YAML]",
                   help="one camera of a rig, repeated per camera (instead of IMAGE): its image, the yaw of its "
                        "optical axis from the rig's forward direction (degrees, counter-clockwise: a left camera "
                        "+90, a rear one 180) and its camera: a horizontal field of view in degrees (idealised "
                        "pinhole) or a CameraInfo YAML file; without the third field, --fov or --camera-info. The "
                        f"images are composed into one panorama facing the rig's forward direction (--heading, "
                        f"--heading-prior and the yaw found are that direction's); --pitch and --roll apply to "
                        f"every camera")
    p.add_argument("--pitch", type=float, default=0.0, help="pinhole camera pitch, degrees up (default 0)")
    p.add_argument("--roll", type=float, default=0.0, help="pinhole camera roll about its optical axis, degrees, "
                                                           "positive lowers the camera's right side (default 0)")
    p.add_argument("--heading", type=float, help="known ENU yaw (map frame, degrees, 0 = east, CCW) of the "
                                                 "camera's forward direction")
    p.add_argument("--heading-prior", metavar="YAW,HALF", help="yaw window: ENU yaw +/- half-width, degrees")
    p.add_argument("--prior", metavar="X,Y,R", help="position prior: map-frame x, y and radius in metres")
    add_cli_options(p, ["backend", "engines", "top_k", "rerank_score", "tile_choice", "alignment_candidates",
                        "decoder_turns"])
    p.add_argument("--distribution", metavar="PNG", help="also write D over the chosen tile as a heat map")
    add_json_flag(p)
    p.set_defaults(handler=localize_command)



def _floats(text: str, n: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise CommandError(f"{what}: expected {n} comma-separated numbers, got {text!r}")
    return vals


def read_image(path: str):
    """An RGB uint8 image from a PNG / JPEG file; CommandError when unreadable."""
    import cv2
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise CommandError(f"image not found: {p}")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise CommandError(f"{p}: not a readable image; expected a PNG or JPEG file")
    return img[:, :, ::-1].copy()


#: the form of one --rig-camera value, for the error messages
RIG_CAMERA_FORM = ("IMAGE,YAW_DEG[,FOV_DEG|,CAMERA_INFO_YAML] (an image file, the yaw of the camera's optical axis "
                   "from the rig's forward direction in degrees, counter-clockwise, and optionally its horizontal "
                   "field of view in degrees or its CameraInfo YAML file)")


def _split_rig_camera(text: str) -> tuple[str, float, str | None]:
    """``IMAGE,YAW[,CAMERA]`` -> (image, yaw, camera or None); the image name may hold commas."""
    def number(v: str) -> float | None:
        try:
            f = float(v)
        except ValueError:
            return None
        return f if f == f and abs(f) != float("inf") else None

    parts = text.rsplit(",", 2)
    if len(parts) == 3 and parts[0] and number(parts[1]) is not None and parts[2]:
        return parts[0], number(parts[1]), parts[2]
    if len(parts) == 3 and Path(parts[0]).is_file() and number(parts[1]) is None:
        raise CommandError(f"--rig-camera {text!r}: yaw {parts[1]!r} is not a number; expected {RIG_CAMERA_FORM}")
    parts = text.rsplit(",", 1)
    if len(parts) == 2 and parts[0] and number(parts[1]) is not None:
        return parts[0], number(parts[1]), None
    raise CommandError(f"--rig-camera {text!r}: expected {RIG_CAMERA_FORM}")


def read_rig(specs: list[str], fov: float | None, camera_info: str | None, pitch: float, roll: float):
    """The images and the :class:`~unifygeo_ros.types.Rig` of the ``--rig-camera`` values
    (the third field, else ``--fov`` / ``--camera-info``, gives each camera), and a JSON-ready
    description of the cameras. CommandError naming what was expected."""
    from ..inference.camera import read_camera_info
    from ..types import Camera, Rig

    images, cameras, yaws, info = [], [], [], []
    for text in specs:
        path, yaw, cam = _split_rig_camera(text)
        image = read_image(path)
        try:
            if cam is None and fov is None and camera_info is None:
                raise CommandError(f"--rig-camera {text!r}: no camera; expected {RIG_CAMERA_FORM}, or --fov / "
                                   f"--camera-info for the cameras without one")
            hfov = None
            if cam is not None:
                try:
                    hfov = float(cam)
                except ValueError:
                    hfov = None
            if cam is None:
                hfov, yaml = fov, camera_info
            else:
                yaml = None if hfov is not None else cam
            if yaml is not None:
                camera = Camera("pinhole", pitch_deg=pitch, roll_deg=roll, intrinsics=read_camera_info(yaml))
                h, w = image.shape[:2]
                if (w, h) != (camera.intrinsics.width, camera.intrinsics.height):
                    raise CommandError(f"--rig-camera {text!r}: {path} is {w} x {h} pixels, but the CameraInfo "
                                       f"{yaml} is for {camera.intrinsics.width} x {camera.intrinsics.height}; "
                                       f"expected an image of the calibrated size")
            else:
                camera = Camera("pinhole", hfov_deg=hfov, pitch_deg=pitch, roll_deg=roll)
        except ValueError as exc:       # CameraInfoError, a field of view out of range
            raise CommandError(f"--rig-camera {text!r}: {exc}") from None
        images.append(image)
        cameras.append(camera)
        yaws.append(yaw)
        info.append({"image": path, "yaw_deg": yaw,
                     "camera": yaml if yaml is not None else {"hfov_deg": hfov}})
    return images, Rig(tuple(cameras), tuple(yaws)), info


def check_png_path(path: str, option: str) -> None:
    """``path`` must name a .png file that can be written (not a folder, its parent not a file)."""
    p = Path(path)
    if p.is_dir():
        raise CommandError(f"{option} {p}: is a folder; expected the name of a PNG file to write (e.g. {p / 'D.png'})")
    if p.suffix.lower() != ".png":
        raise CommandError(f"{option} {p}: expected a file name ending in .png")
    parent = next((q for q in p.parents if q.exists()), None)
    if parent is not None and not parent.is_dir():
        raise CommandError(f"{option} {p}: {parent} is a file, not a folder; expected a PNG file name in a folder")


def localize_command(args: argparse.Namespace) -> int:
    from ..log import setup_logging
    from ..types import (
        Camera,
        DatabaseError,
        HeadingPrior,
        LocalizationError,
        PositionPrior,
    )
    from .localizer import Localizer

    setup_logging()
    if args.distribution:
        check_png_path(args.distribution, "--distribution")
    if args.rig_camera:
        if args.image is not None:
            raise CommandError(f"{args.image}: expected either IMAGE or --rig-camera, not both")
    elif args.image is None:
        raise CommandError("expected an IMAGE (a panorama, or a pinhole image with --fov / --camera-info) or "
                           "--rig-camera IMAGE,YAW[,FOV|,YAML] per camera of a rig")
    elif args.camera_info is None and args.fov is None and (args.pitch or args.roll):
        raise CommandError("--pitch / --roll: expected a pinhole camera (--fov or --camera-info) as well")
    try:
        if args.rig_camera:
            image, camera, rig_info = read_rig(args.rig_camera, args.fov, args.camera_info, args.pitch, args.roll)
        elif args.camera_info is not None:
            from ..inference.camera import read_camera_info

            image = read_image(args.image)
            camera = Camera("pinhole", pitch_deg=args.pitch, roll_deg=args.roll,
                            intrinsics=read_camera_info(args.camera_info))
            h, w = image.shape[:2]
            if (w, h) != (camera.intrinsics.width, camera.intrinsics.height):
                raise CommandError(f"{args.image}: {w} x {h} pixels, but --camera-info {args.camera_info} is for "
                                   f"{camera.intrinsics.width} x {camera.intrinsics.height}; expected an image of "
                                   f"the calibrated size")
        elif args.fov is not None:
            image = read_image(args.image)
            camera = Camera("pinhole", hfov_deg=args.fov, pitch_deg=args.pitch, roll_deg=args.roll)
        else:
            image = read_image(args.image)
            camera = Camera()
        priors = []
        if args.prior:
            priors.append(PositionPrior(*_floats(args.prior, 3, "--prior")))
        if args.heading_prior:
            priors.append(HeadingPrior(*_floats(args.heading_prior, 2, "--heading-prior")))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    try:
        loc = Localizer.open(args.db, backend=args.backend, engines=args.engines or None, top_k=args.top_k,
                             rerank_score=args.rerank_score, alignment_candidates=args.alignment_candidates,
                             decoder_turns=args.decoder_turns, tile_choice=args.tile_choice)
        res = loc.localize(image, camera=camera, heading=args.heading, prior=tuple(priors) or None,
                           return_distribution=bool(args.distribution))
    except (DatabaseError, LocalizationError, ValueError, RuntimeError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc
    out = res.as_dict()
    if args.rig_camera:
        out["rig"] = rig_info
    else:
        out["image"] = args.image
    out["map_frame"] = {"crs_wkt": loc.frame.crs_wkt, "origin_e": loc.frame.origin_e, "origin_n": loc.frame.origin_n}
    if args.distribution:
        from .plots import write_distribution_png

        try:
            out["distribution_png"] = str(write_distribution_png(res, loc, args.distribution))
        except (OSError, ValueError) as exc:
            raise CommandError(f"--distribution {args.distribution}: cannot write the PNG ({exc})") from exc

    def human(r: dict) -> str:
        import numpy as np

        cov = np.asarray(r["covariance"])
        yaw = "not estimated" if r["yaw_deg"] is None else (
            f"{r['yaw_deg']:.1f} deg ENU (sigma {np.degrees(np.sqrt(cov[2, 2])):.1f} deg)")
        if not r["fix"]:
            return (f"no fix: {r['no_fix_reason']}\n"
                    f"(the best guess, not to be used: tile {r['tile_id']}, map x {r['x']:.2f} m, y {r['y']:.2f} m)")
        lines = [f"position  lat {r['latitude']:.7f}, lon {r['longitude']:.7f}; map x {r['x']:.2f} m, y {r['y']:.2f} m "
                 f"(sigma x {np.sqrt(cov[0, 0]):.2f} m, y {np.sqrt(cov[1, 1]):.2f} m)",
                 f"yaw       {yaw}; heading mode {r['heading_mode']}",
                 f"tile      {r['tile_id']}, MAP pixel ({r['pixel'][0]:.1f}, {r['pixel'][1]:.1f}); confidence "
                 f"{r['confidence']:.2f}; backend {r['backend']}",
                 "candidates " + ", ".join(f"{c['tile_id']} ({c['combined']:.3f})" for c in r["candidates"]),
                 "ms        " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings_ms"].items())]
        if "distribution_png" in r:
            lines.append(f"D         {r['distribution_png']}")
        return "\n".join(lines)

    emit(out, args.json, human)
    return 0 if res.fix else EXIT_NO_FIX


