"""``unifygeo sim ...``: the synthetic city and its renders.

``register`` creates the ``sim`` command and its sub-command parser, stored in
:data:`SIM_SUBPARSERS`. Other modules listed after this one in
``unifygeo_ros.cli.COMMAND_MODULES`` (``unifygeo_ros.sim.export_cli``: ``sim vigor``,
``sim drive``) add their sub-commands to ``unifygeo_ros.sim.cli.SIM_SUBPARSERS`` from their
own ``register``. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from unifygeo_ros.cli import CommandError, add_json_flag, emit

SIM_SUBPARSERS = None  # the ``sim`` sub-command parser (argparse _SubParsersAction), set by register()
DEFAULT_ORIGIN = (48.137, 11.575)


def parse_origin(text: str) -> tuple[float, float]:
    """``"LAT,LON"`` in degrees -> (lat, lon); raises CommandError with the expected form."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise CommandError(f"--origin must be LAT,LON in decimal degrees (e.g. 48.137,11.575), got {text!r}") from None
    if not (-80.0 <= lat <= 84.0) or not (-180.0 <= lon <= 180.0):
        raise CommandError(f"--origin latitude must be in [-80, 84] and longitude in [-180, 180] (UTM), got {text!r}")
    return lat, lon


def _parse_pair(text: str, name: str) -> tuple[float, float]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise CommandError(f"{name} must be X,Y in local metres, got {text!r}") from None


SUN_RANDOM_PREFIX = "random:"


def parse_sun(text: str) -> tuple[float, float]:
    """``--sun``: ``"AZIMUTH,ELEVATION"`` in degrees (azimuth a compass bearing, clockwise from
    grid north) or ``"random:SEED"`` (:func:`unifygeo_ros.sim.world.random_sun`) -> (azimuth, elevation)."""
    from unifygeo_ros.sim.world import random_sun

    text = str(text).strip()
    if text.startswith(SUN_RANDOM_PREFIX):
        seed = text[len(SUN_RANDOM_PREFIX):]
        if not seed.isdigit():
            raise CommandError(f"--sun random:SEED needs a non-negative integer SEED, got {text!r}")
        return random_sun(int(seed))
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        azimuth, elevation = float(parts[0]), float(parts[1])
    except ValueError:
        raise CommandError("--sun must be AZIMUTH,ELEVATION in degrees (azimuth a compass bearing, clockwise "
                           f"from north; e.g. 190,30) or random:SEED, got {text!r}") from None
    if not 10.0 <= elevation <= 85.0:
        raise CommandError(f"--sun elevation must be in [10, 85] degrees, got {elevation:g}")
    return azimuth % 360.0, elevation


def _style(name: str, palette: str | None = None, sun: str | None = None):
    """The style preset ``name``, with its palette replaced by ``palette`` and its sun by
    ``sun`` (see :func:`parse_sun`) when given."""
    from dataclasses import replace

    from unifygeo_ros.sim.world import STYLE_PRESETS, CityStyle

    if name not in STYLE_PRESETS:
        raise CommandError(f"unknown --style {name!r}; expected one of: {', '.join(sorted(STYLE_PRESETS))}")
    style = CityStyle.preset(name)
    if sun is not None:
        azimuth, elevation = parse_sun(sun)
        style = replace(style, sun_azimuth_deg=azimuth, sun_elevation_deg=elevation)
    if palette is None:
        return style
    try:
        return replace(style, palette=palette)
    except ValueError as exc:
        raise CommandError(f"--palette: {exc}") from None


def _check_size(size_m: float) -> float:
    if not size_m > 0:
        raise CommandError(f"--size-m must be a positive number of metres, got {size_m}")
    if not 60.0 <= size_m <= 5000.0:
        raise CommandError(f"--size-m must be between 60 and 5000 metres, got {size_m}")
    return size_m


def _cmd_city(args: argparse.Namespace) -> int:
    from unifygeo_ros.progress import tqdm

    from unifygeo_ros.sim.render import write_orthophoto_geotiff
    from unifygeo_ros.sim.world import generate_city

    size = _check_size(args.size_m)
    lat, lon = parse_origin(args.origin)
    style = _style(args.style, args.palette, args.sun)
    if not 0.02 <= args.mpp <= 10.0:
        raise CommandError(f"--mpp must be in [0.02, 10] metres per pixel, got {args.mpp}")
    if not 0.02 <= args.raster_mpp <= 1.0:
        raise CommandError(f"--raster-mpp must be in [0.02, 1] metres per pixel, got {args.raster_mpp}")
    out = Path(args.out)
    t0 = time.perf_counter()
    with tqdm(total=2, desc="city", unit="step", leave=False) as bar:
        bar.set_postfix_str("generating")
        city = generate_city(args.seed, size, lat, lon, style, raster_mpp=args.raster_mpp)
        bar.update()
        bar.set_postfix_str("saving")
        json_path = city.save(out)
        bar.update()
    t_gen = time.perf_counter() - t0
    tif = out / "orthophoto.tif"
    info = write_orthophoto_geotiff(city, tif, args.mpp, progress=True)
    result = {
        "path": str(out),
        "city_json": str(json_path),
        "orthophoto": str(tif),
        "seed": args.seed,
        "size_m": size,
        "style": style.name,
        "palette": style.palette,
        "sun": {"azimuth_deg": style.sun_azimuth_deg, "elevation_deg": style.sun_elevation_deg},
        "origin": {"lat": lat, "lon": lon},
        "crs": f"EPSG:{city.epsg}",
        "mpp": args.mpp,
        "raster_mpp": city.raster_mpp,
        "orthophoto_px": info["width"],
        "counts": city.counts(),
        "seconds": {"generate": round(t_gen, 3), "total": round(time.perf_counter() - t0, 3)},
    }
    emit(result, args.json)
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    import numpy as np

    from unifygeo_ros.sim import preview
    from unifygeo_ros.sim.world import City, generate_city

    t0 = time.perf_counter()
    if args.city:
        try:
            city = City.load(args.city)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(f"--city: {exc}") from None
    else:
        lat, lon = parse_origin(args.origin)
        city = generate_city(args.seed, _check_size(args.size_m), lat, lon, _style(args.style))
    rng = np.random.default_rng(args.seed)
    spec = preview.random_spec(city, rng)
    if args.position is not None:
        x, y = _parse_pair(args.position, "--position")
        if not (0 <= x <= city.size_m and 0 <= y <= city.size_m):
            raise CommandError(f"--position must lie inside the city square [0, {city.size_m:g}] m, "
                               f"got {args.position}")
        spec.xy = (x, y)
    if args.yaw is not None:
        spec.yaw_deg = float(args.yaw)
    sheet = preview.contact_sheet(city, spec)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    preview.write_png(out, sheet)
    emit({"path": str(out), "city_seed": city.seed, "style": city.style.name, "camera_xy": list(spec.xy),
          "yaw_deg": spec.yaw_deg, "size_px": [int(sheet.shape[1]), int(sheet.shape[0])],
          "seconds": round(time.perf_counter() - t0, 3)}, args.json)
    return 0


def register(sub, bench_sub) -> None:
    """Add ``sim`` (with ``city`` and ``preview``) to ``sub``; no benchmarks here (``bench sim`` lives elsewhere)."""
    global SIM_SUBPARSERS
    sim = sub.add_parser("sim", help="synthetic city: generate, render, export",
                         description="Synthetic cross-view world: a procedural city with aerial and street renders.")
    SIM_SUBPARSERS = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")
    SIM_SUBPARSERS.required = True

    p = SIM_SUBPARSERS.add_parser("city", help="generate a city: city.json + orthophoto GeoTIFF",
                                  description="Generate a procedural city and write DIR/city.json and "
                                              "DIR/orthophoto.tif (grid-north up, the origin's UTM zone).")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same city)")
    p.add_argument("--size-m", type=float, default=500.0, help="side of the square city in metres (60..5000)")
    p.add_argument("--origin", required=True, metavar="LAT,LON",
                   help="south-west corner in degrees; use --origin=LAT,LON for a negative latitude")
    p.add_argument("--style", default="default", help="style preset: default, suburb, downtown, oldtown, nordic")
    p.add_argument("--palette", metavar="NAME",
                   help="replace the style's colour palette: temperate, metropolis, mediterranean, nordic, or "
                        "random:SEED (colours drawn at random for each material: domain randomisation)")
    p.add_argument("--sun", metavar="AZ,EL",
                   help="replace the style's sun: AZIMUTH,ELEVATION in degrees (azimuth a compass bearing, "
                        "clockwise from north; elevation 10-85; --sun=AZ,EL for a negative azimuth), or random:SEED (azimuth uniform over the "
                        "circle, elevation uniform in 20-70 deg: domain randomisation of the lighting)")
    p.add_argument("--mpp", type=float, default=0.2, help="orthophoto metres per pixel")
    p.add_argument("--raster-mpp", type=float, default=0.1,
                   help="resolution of the city's shared ground/aerial rasters, saved in city.json; renders finer "
                        "than this are interpolated")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_json_flag(p)
    p.set_defaults(handler=_cmd_city)

    p = SIM_SUBPARSERS.add_parser("preview", help="contact sheet PNG: aerial tile, pinhole view, panorama",
                                  description="Render one street camera of a city (loaded with --city or "
                                              "generated from --seed) as a contact-sheet PNG.")
    p.add_argument("--seed", type=int, default=0, help="city seed (without --city) and camera choice")
    p.add_argument("--city", metavar="DIR", help="load DIR/city.json instead of generating")
    p.add_argument("--size-m", type=float, default=400.0, help="size of a generated city (m)")
    p.add_argument("--origin", default=f"{DEFAULT_ORIGIN[0]},{DEFAULT_ORIGIN[1]}", metavar="LAT,LON",
                   help="origin of a generated city")
    p.add_argument("--style", default="default", help="style of a generated city")
    p.add_argument("--position", metavar="X,Y", help="camera position in local metres (default: random street spot)")
    p.add_argument("--yaw", type=float, help="camera ENU yaw in degrees (default: random)")
    p.add_argument("--out", default="sim_preview.png", metavar="PNG", help="output PNG")
    add_json_flag(p)
    p.set_defaults(handler=_cmd_preview)
