"""build-db: real orthophotos (UTM, 16-bit grey), reprojection, nodata, resume, refusals, bad rasters.

The model here is an untrained ``small`` network (the database's geometry and bookkeeping
do not depend on what the weights know); the localizer tests use real rendered cities.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from pyproj import Geod, Transformer

from unifygeo_ros.database.build import BuildConfig, build_database
from unifygeo_ros.database.raster import TileReader, inspect, plan_grid
from unifygeo_ros.database.store import Database, seal_manifest
from unifygeo_ros.inference.retrieval import search_tiles
from unifygeo_ros.model.unifygeo import UnifyGeo, save_checkpoint
from unifygeo_ros.model_config import SMALL
from unifygeo_ros.types import DatabaseError

DATA = Path(__file__).parent / "data" / "orthophoto"
ATLANTA = DATA / "atlanta_0p5m_epsg32616.tif"
ALBERS = DATA / "albers_30m_custom_proj.tif"
GEOD = Geod(ellps="WGS84")


def make_weights(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(UnifyGeo("small").eval(), path, half=True, training={"aerial_mpp": 0.5})
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("w") / "a.pt", 0)


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("w") / "b.pt", 1)


@pytest.fixture(scope="module")
def atlanta_db(tmp_path_factory, weights):
    out = tmp_path_factory.mktemp("db") / "atlanta"
    summary = build_database(BuildConfig([str(ATLANTA)], str(weights), str(out), backend="torch-cpu", batch_size=64),
                             progress=False)
    return out, summary


def _reproject(src_path: Path, dst_path: Path, crs, res: float | None = None) -> Path:
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(src_path) as src:
        kw = {"resolution": res} if res else {}
        transform, w, h = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds, **kw)
        profile = src.profile | {"crs": crs, "transform": transform, "width": w, "height": h, "tiled": False}
        with rasterio.open(dst_path, "w", **profile) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.bilinear,
                      src_nodata=src.nodata, dst_nodata=src.nodata)
    return dst_path


def test_atlanta_tile_centres_agree_with_rasterio_and_pyproj(atlanta_db):
    out, summary = atlanta_db
    assert summary["crs"] == "the first raster's projected CRS"
    db = Database(out)
    assert db.tile_size == 128 and db.mpp == pytest.approx(0.5)      # native grid: 0.5 m/px within 2 %
    assert db.n == 14 * 14                                           # 900 px, 128 px tiles every 64 px
    to_ll = Transformer.from_crs("EPSG:32616", "EPSG:4326", always_xy=True)
    with rasterio.open(ATLANTA) as src:
        for t in range(db.n):
            r0, c0 = int(db.tiles["row0"][t]), int(db.tiles["col0"][t])
            # The centre of a 128 px tile is the corner shared by pixels (r0+63..64, c0+63..64).
            e, n = src.xy(r0 + 64, c0 + 64, offset="ul")
            assert abs(e - db.tiles["e"][t]) < 0.1 and abs(n - db.tiles["n"][t]) < 0.1
            assert db.tiles["x"][t] == pytest.approx(db.tiles["e"][t] - db.frame.origin_e)
            lon, lat = to_ll.transform(e, n)
            _, _, dist = GEOD.inv(lon, lat, db.tiles["lon"][t], db.tiles["lat"][t])
            assert dist < 0.1
    # The map frame's origin is the raster's lower-left corner; the manifest says so.
    m = db.manifest
    assert (m["map_frame"]["origin_e"], m["map_frame"]["origin_n"]) == (733601.0, 3724689.0)
    assert m["model"]["aerial_mpp"] == 0.5 and m["features"] == "stored" and m["complete"]
    assert -3.0 < m["convergence_deg"]["min"] < m["convergence_deg"]["max"] < 3.0
    assert (out / "index.faiss").is_file() and (out / "model.pt").is_file()


def test_pixel_and_map_coordinates_round_trip(atlanta_db):
    db = Database(atlanta_db[0])
    t = 17
    x, y = db.pixel_to_xy(t, 64.0, 64.0)
    assert (x, y) == pytest.approx((db.tiles["x"][t], db.tiles["y"][t]))
    x, y = db.pixel_to_xy(t, 10.25, 100.5)          # row down = south, col right = east
    assert x - db.tiles["x"][t] == pytest.approx((100.5 - 64) * 0.5)
    assert y - db.tiles["y"][t] == pytest.approx((64 - 10.25) * 0.5)
    assert db.xy_to_pixel(t, x, y) == pytest.approx((10.25, 100.5))


def test_uint16_grey_is_stretched_to_rgb():
    src = inspect(ATLANTA)
    assert src.bands == [1, 1, 1] and src.stretch is not None and src.stretch[0] < src.stretch[1]
    grid, _ = plan_grid([src], 0.5)
    with TileReader([src], grid) as reader:
        img, valid = reader.read(256, 256, 128)
    assert img.dtype == np.uint8 and valid.all()
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    assert img.min() < 60 and img.max() > 180           # a stretch, not a 16-to-8-bit truncation
    with rasterio.open(ATLANTA) as ds:
        raw = ds.read(1, window=rasterio.windows.Window(256, 256, 128, 128)).astype(float)
    lo, hi = src.stretch
    assert np.abs(img[..., 0] - np.clip((raw - lo) / (hi - lo) * 255, 0, 255)).max() <= 1.0


def test_nodata_tiles_are_skipped(tmp_path, weights):
    """A canvas twice as wide with the right half nodata: only tiles touching the image remain."""
    path = tmp_path / "half.tif"
    with rasterio.open(ATLANTA) as src:
        data = src.read(1)
        profile = src.profile | {"width": 1800}
        canvas = np.zeros((900, 1800), np.uint16)
        canvas[:, :900] = data
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(canvas, 1)
    out = tmp_path / "db"
    s = build_database(BuildConfig([str(path)], str(weights), str(out), backend="torch-cpu", batch_size=64),
                       progress=False)
    db = Database(out)
    assert s["skipped_nodata"] > 0
    assert db.tiles["col0"].max() <= 900 - 1                 # every kept tile starts left of the nodata half
    assert db.n + s["skipped_nodata"] == 14 * 28              # ceil((1800 - 128) / 64) + 1 = 28 columns


def test_resume_continues_without_reencoding(tmp_path, weights, atlanta_db):
    out = tmp_path / "db"
    cfg = BuildConfig([str(ATLANTA)], str(weights), str(out), backend="torch-cpu", batch_size=64)

    def stop(done, total):
        if done >= 64:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_database(cfg, progress=False, on_batch=stop)
    with pytest.raises(DatabaseError, match="did not finish"):
        Database(out)
    s = build_database(cfg, progress=False)
    assert s["resumed_from"] == 64 and s["tiles_encoded_this_run"] == 196 - 64
    fresh = np.load(atlanta_db[0] / "descriptors.npy")
    np.testing.assert_array_equal(np.load(out / "descriptors.npy"), fresh)
    np.testing.assert_array_equal(np.load(out / "features_l2.npy"), np.load(atlanta_db[0] / "features_l2.npy"))
    with pytest.raises(DatabaseError, match="already holds a complete database"):
        build_database(cfg, progress=False)


def test_another_model_is_refused_at_resume_and_at_open(tmp_path, weights, other_weights, atlanta_db):
    from unifygeo_ros.localizer.localizer import Localizer

    out = tmp_path / "db"

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_database(BuildConfig([str(ATLANTA)], str(weights), str(out), backend="torch-cpu"), progress=False,
                       on_batch=stop)
    with pytest.raises(DatabaseError, match="refusing to mix models"):
        build_database(BuildConfig([str(ATLANTA)], str(other_weights), str(out), backend="torch-cpu"), progress=False)
    with pytest.raises(DatabaseError, match="was built with model"):
        Localizer.open(atlanta_db[0], backend="torch-cpu", weights=other_weights)


def test_reprojected_raster_gets_a_utm_frame(tmp_path, weights):
    """A raster in geographic coordinates is warped into the UTM zone of its centre."""
    geo = _reproject(ATLANTA, tmp_path / "wgs84.tif", "EPSG:4326")
    out = tmp_path / "db"
    s = build_database(BuildConfig([str(geo)], str(weights), str(out), backend="torch-cpu", batch_size=64),
                       progress=False)
    assert s["crs"].startswith("UTM zone")
    db = Database(out)
    from pyproj import CRS

    assert CRS.from_wkt(db.frame.crs_wkt).to_epsg() == 32616
    assert db.mpp == pytest.approx(0.5 * db.manifest["scale_factor"])
    to_ll = Transformer.from_crs("EPSG:32616", "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(db.tiles["e"], db.tiles["n"])
    _, _, dist = GEOD.inv(lon, lat, db.tiles["lon"], db.tiles["lat"])
    assert dist.max() < 0.1
    # The warped image lines up with the original: the same place looks the same.
    src0 = inspect(ATLANTA)
    grid0, _ = plan_grid([src0], 0.5)
    src1 = inspect(geo)
    grid1, _ = plan_grid([src1], 0.5)
    with TileReader([src0], grid0) as r0, TileReader([src1], grid1) as r1:
        e, n = grid0.pixel_to_crs(300, 300)
        a, _ = r0.read(300, 300, 64)
        row1 = int(round((grid1.y0 - n) / grid1.mpp))
        col1 = int(round((e - grid1.x0) / grid1.mpp))
        b, ok = r1.read(row1, col1, 64)
    assert ok.all()
    corr = np.corrcoef(a[..., 0].ravel().astype(float), b[..., 0].ravel().astype(float))[0, 1]
    assert corr > 0.8


def test_custom_albers_crs_works_and_the_30m_raster_fails_clearly(tmp_path, weights):
    """The Albers sample's CRS is handled (Atlanta warped into it builds a database in that
    CRS, tile lat/lon agree with pyproj); the sample itself, at 30 m/px, is refused."""
    with rasterio.open(ALBERS) as src:
        albers = src.crs
    warped = _reproject(ATLANTA, tmp_path / "albers.tif", albers, res=0.5)
    out = tmp_path / "db"
    s = build_database(BuildConfig([str(warped)], str(weights), str(out), backend="torch-cpu", batch_size=64),
                       progress=False)
    assert s["crs"] == "the first raster's projected CRS"
    db = Database(out)
    to_ll = Transformer.from_crs(albers.to_wkt(), "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(db.tiles["e"], db.tiles["n"])
    _, _, dist = GEOD.inv(lon, lat, db.tiles["lon"], db.tiles["lat"])
    assert dist.max() < 0.1
    with pytest.raises(DatabaseError, match=r"30 m/px is 60x coarser than the 0.5 m/px"):
        build_database(BuildConfig([str(ALBERS)], str(weights), str(tmp_path / "db2")), progress=False)


def test_two_rasters_share_one_frame(tmp_path, weights):
    """The second raster (in another CRS) is warped into the first one's frame; tiles cover both."""
    a = tmp_path / "west.tif"
    with rasterio.open(ATLANTA) as src:
        win = rasterio.windows.Window(0, 0, 450, 900)
        with rasterio.open(a, "w", **(src.profile | {"width": 450, "transform": src.window_transform(win)})) as dst:
            dst.write(src.read(1, window=win), 1)
        win = rasterio.windows.Window(450, 0, 450, 900)
        east = tmp_path / "east_utm.tif"
        with rasterio.open(east, "w", **(src.profile | {"width": 450, "transform": src.window_transform(win)})) as dst:
            dst.write(src.read(1, window=win), 1)
    east_geo = _reproject(east, tmp_path / "east_wgs84.tif", "EPSG:4326")
    out = tmp_path / "db"
    build_database(BuildConfig([str(a), str(east_geo)], str(weights), str(out), backend="torch-cpu", batch_size=64),
                   progress=False)
    db = Database(out)
    assert db.manifest["crs_choice"] == "the first raster's projected CRS"
    assert db.tiles["x"].max() > 400                      # tiles over the eastern half exist
    assert db.n >= 14 * 13


def test_bad_rasters_fail_clearly(tmp_path, weights):
    junk = tmp_path / "corrupt.tif"
    junk.write_bytes(b"II*\x00" + b"\x17" * 500)
    with pytest.raises(DatabaseError, match="not a readable GeoTIFF"):
        build_database(BuildConfig([str(junk)], str(weights), str(tmp_path / "d1")), progress=False)
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as dst:
        dst.write(np.full((3, 64, 64), 100, np.uint8))
    with pytest.raises(DatabaseError, match="no coordinate reference system"):
        build_database(BuildConfig([str(nocrs)], str(weights), str(tmp_path / "d2")), progress=False)
    with pytest.raises(DatabaseError, match="orthophoto not found"):
        build_database(BuildConfig([str(tmp_path / "missing.tif")], str(weights), str(tmp_path / "d3")),
                       progress=False)
    twoband = tmp_path / "two.tif"
    with rasterio.open(twoband, "w", driver="GTiff", width=64, height=64, count=2, dtype="uint8", crs="EPSG:32616",
                       transform=rasterio.transform.from_origin(733601, 3725139, 0.5, 0.5)) as dst:
        dst.write(np.full((2, 64, 64), 100, np.uint8))
    with pytest.raises(DatabaseError, match="expected 1 .grey. or 3 .RGB. bands"):
        build_database(BuildConfig([str(twoband)], str(weights), str(tmp_path / "d4")), progress=False)


def test_empty_database_is_refused(tmp_path, weights):
    empty = tmp_path / "allnodata.tif"
    with rasterio.open(empty, "w", driver="GTiff", width=300, height=300, count=1, dtype="uint16", nodata=0,
                       crs="EPSG:32616", transform=rasterio.transform.from_origin(733601, 3725139, 0.5, 0.5)) as dst:
        dst.write(np.zeros((1, 300, 300), np.uint16))
    with pytest.raises(DatabaseError, match="every pixel is nodata"):
        build_database(BuildConfig([str(empty)], str(weights), str(tmp_path / "d")), progress=False)
    grey8 = tmp_path / "allnodata8.tif"      # 8-bit: no stretch; the tile plan finds nothing valid
    with rasterio.open(grey8, "w", driver="GTiff", width=300, height=300, count=1, dtype="uint8", nodata=0,
                       crs="EPSG:32616", transform=rasterio.transform.from_origin(733601, 3725139, 0.5, 0.5)) as dst:
        dst.write(np.zeros((1, 300, 300), np.uint8))
    with pytest.raises(DatabaseError, match="holds valid .non-nodata. pixels"):
        build_database(BuildConfig([str(grey8)], str(weights), str(tmp_path / "d8")), progress=False)
    (tmp_path / "notadb").mkdir()
    with pytest.raises(DatabaseError, match="not a database"):
        Database(tmp_path / "notadb")


def test_recompute_mode_stores_pixels(tmp_path, weights, atlanta_db):
    out = tmp_path / "db"
    s = build_database(BuildConfig([str(ATLANTA)], str(weights), str(out), backend="torch-cpu", batch_size=64,
                                   features="recompute"), progress=False)
    assert s["features"] == "recompute"
    db = Database(out)
    assert db.pixels.shape == (196, 128, 128, 3) and db.features is None
    np.testing.assert_array_equal(np.load(out / "descriptors.npy"), np.load(atlanta_db[0] / "descriptors.npy"))
    assert s["disk_bytes"] < atlanta_db[1]["disk_bytes"]

    # A stored-features database shows a tile (for pictures) by reading the orthophoto
    # again: the same pixels the recompute database stored, for every tile.
    stored = Database(atlanta_db[0])
    for t in (0, 57, 195):
        img, why = stored.tile_image(t)
        assert why == "" and img is not None
        np.testing.assert_array_equal(img, db.pixels[t])


def test_tile_image_says_why_when_the_orthophoto_is_gone(tmp_path, weights):
    ortho = tmp_path / "ortho.tif"
    shutil.copy(ATLANTA, ortho)
    build_database(BuildConfig([str(ortho)], str(weights), str(tmp_path / "db"), backend="torch-cpu",
                               batch_size=64), progress=False)
    db = Database(tmp_path / "db")
    assert db.tile_image(0)[1] == ""
    ortho.unlink()
    img, why = db.tile_image(0)
    assert img is None and "orthophoto not found" in why


def test_build_db_cli_prints_one_json_object(tmp_path, weights):
    small = tmp_path / "crop.tif"
    with rasterio.open(ATLANTA) as src:
        win = rasterio.windows.Window(0, 0, 256, 256)
        with rasterio.open(small, "w", **(src.profile | {"width": 256, "height": 256,
                                                          "transform": src.window_transform(win)})) as dst:
            dst.write(src.read(1, window=win), 1)
    out = tmp_path / "db"
    cmd = [sys.executable, "-m", "unifygeo_ros", "build-db", "--ortho", str(small), "--weights", str(weights),
           "--out", str(out), "--backend", "torch-cpu", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["tiles"] == 9 and report["features"] == "stored" and report["index"] == "flat"
    assert "encoding tiles" in proc.stderr                  # the progress bar goes to stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already holds a complete database" in json.loads(again.stdout)["error"]
    shutil.rmtree(out)


def test_rotation_ensemble_descriptors_and_single_turn_databases(tmp_path, weights, atlanta_db):
    """Default builds store the four quarter turns' descriptors (inference.retrieval); a
    single-turn build, and a database from before the ensemble (no "retrieval" entry in the
    manifest), open as one turn; a manifest that disagrees with its descriptors is refused."""
    four = Database(atlanta_db[0])
    assert four.turns == 4 and four.manifest["retrieval"]["turns"] == 4
    d = SMALL.descriptor_dim
    assert four.descriptors.shape == (196, 4 * d)
    np.testing.assert_allclose(np.linalg.norm(four.descriptors, axis=1), 1.0, atol=1e-5)
    out = tmp_path / "one"
    build_database(BuildConfig([str(ATLANTA)], str(weights), str(out), backend="torch-cpu", batch_size=64, turns=1),
                   progress=False)
    one = Database(out)
    assert one.turns == 1 and one.descriptors.shape == (196, d)
    # Turn 0 of the ensemble is the tile as it is: the single-turn descriptor, scaled by 1/2.
    np.testing.assert_allclose(2 * four.descriptors[:, :d], one.descriptors, atol=1e-5)
    assert four.index.d == d                      # the index holds turn 0; the ensemble re-scores its shortlist
    q = np.asarray(four.descriptors[[7, 100]])
    scores, ids = search_tiles(four, q, 5)
    assert ids[0] in (7, 100) and scores[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="expected 768-d queries"):
        search_tiles(four, q[:, :d], 5)
    manifest = json.loads((out / "manifest.json").read_text())
    legacy = {k: v for k, v in manifest.items() if k != "retrieval"}
    (out / "manifest.json").write_text(json.dumps(legacy))
    with pytest.raises(DatabaseError, match="does not match its hash"):      # an edited manifest is refused
        Database(out)
    (out / "manifest.json").write_text(json.dumps(seal_manifest(legacy)))     # as the build would have sealed it
    assert Database(out).turns == 1
    (out / "manifest.json").write_text(json.dumps(seal_manifest({**legacy, "retrieval": {"turns": 4}})))
    with pytest.raises(DatabaseError, match=r"expected 768-d descriptors \(4 turn\(s\) of 192\) and an index of turn 0, found 192"):
        Database(out)
    with pytest.raises(DatabaseError, match="--turns"):
        build_database(BuildConfig([str(ATLANTA)], str(weights), str(tmp_path / "bad"), turns=3), progress=False)
