"""Bad input to `unifygeo build-db`, `localize` and `verify-db`: rasters, weights, build options,
database folders and CLI options each end in one line naming the input and what was
expected, exit status 2, and produce no database and no pose.

The commands run in-process (``unifygeo_ros.cli.main``) on small inputs: a 256 x 256 px crop
of the real Atlanta orthophoto (nine tiles), tiny synthetic rasters and an untrained
``small`` model; two run as a real process to check the exit status and that no traceback
is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine, from_origin

from unifygeo_ros.cli import main
from unifygeo_ros.database.build import BuildConfig, build_database
from unifygeo_ros.database.store import Database, seal_manifest
from unifygeo_ros.model.unifygeo import UnifyGeo, save_checkpoint
from unifygeo_ros.model_config import get_config
from unifygeo_ros.types import DatabaseError

DATA = Path(__file__).parent / "data" / "orthophoto"
ATLANTA = DATA / "atlanta_0p5m_epsg32616.tif"
ALBERS = DATA / "albers_30m_custom_proj.tif"


def _write_tif(path: Path, data: np.ndarray, crs, transform, **kw) -> Path:
    count, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=count, dtype=data.dtype.name, crs=crs,
                       transform=transform, **kw) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """Everything the cases share: weights, rasters, a database, an unfinished build, a panorama."""
    root = tmp_path_factory.mktemp("bad_input")
    torch.manual_seed(0)
    model = UnifyGeo("small").eval()
    weights = root / "w.pt"
    save_checkpoint(model, weights, half=True, training={"aerial_mpp": 0.5})
    payload = torch.load(weights, weights_only=True)
    nan = {**payload, "state_dict": dict(payload["state_dict"])}
    key = next(k for k, v in nan["state_dict"].items() if v.is_floating_point())
    nan["state_dict"][key] = torch.full_like(nan["state_dict"][key], float("nan"))
    torch.save(nan, root / "nan.pt")
    torch.save({**payload, "config": get_config("paper").as_dict()}, root / "other_config.pt")
    (root / "cut.pt").write_bytes(weights.read_bytes()[:4000])
    huge = UnifyGeo("small").eval()           # finite weights whose outputs overflow to NaN
    with torch.no_grad():
        for prm in huge.parameters():
            if prm.ndim == 4:
                prm.fill_(1e30)
    save_checkpoint(huge, root / "overflow.pt", training={"aerial_mpp": 0.5})

    with rasterio.open(ATLANTA) as src:
        win = rasterio.windows.Window(0, 0, 256, 256)
        grey, tr, crs = src.read(window=win), src.window_transform(win), src.crs
        profile = src.profile | {"width": 256, "height": 256, "transform": tr}
    crop = root / "crop.tif"
    with rasterio.open(crop, "w", **profile) as dst:
        dst.write(grey)
    south = _write_tif(root / "south_up.tif", grey[:, ::-1].copy(), crs,
                       Affine(tr.a, 0.0, tr.c, 0.0, -tr.e, tr.f + tr.e * 256), nodata=0)
    rgb = np.random.default_rng(0).integers(1, 255, size=(3, 300, 300), dtype=np.uint8)
    rgb_tif = _write_tif(root / "rgb.tif", rgb, crs, from_origin(733601, 3725139, 0.5, 0.5))

    db = root / "db"
    build_database(BuildConfig([str(crop)], str(weights), str(db), backend="torch-cpu"), progress=False)
    unfinished = root / "unfinished"

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_database(BuildConfig([str(crop)], str(weights), str(unfinished), backend="torch-cpu", batch_size=4),
                       progress=False, on_batch=stop)
    import cv2

    pano = root / "pano.png"
    cv2.imwrite(str(pano), np.random.default_rng(1).integers(0, 255, size=(256, 512, 3), dtype=np.uint8))
    return SimpleNamespace(root=root, weights=weights, crop=crop, south=south, rgb=rgb, rgb_tif=rgb_tif, crs=crs,
                           db=db, unfinished=unfinished, pano=pano)


# ---- helpers ------------------------------------------------------------------------------------

def build(w, out, *orthos, weights=None, extra=()):
    orthos = orthos or (w.crop,)
    argv = ["build-db", "--weights", str(weights or w.weights), "--out", str(out), "--backend", "torch-cpu",
            *[a for o in orthos for a in ("--ortho", str(o))], *extra]
    return argv, out


def copy_db(w, tmp, src=None) -> Path:
    dst = tmp / "copy"
    shutil.copytree(src or w.db, dst, ignore=shutil.ignore_patterns("engines"))
    return dst


def edit_manifest(db: Path, change, seal: bool = False) -> Path:
    m = json.loads((db / "manifest.json").read_text())
    m = change(m)
    (db / "manifest.json").write_text(json.dumps(seal_manifest(m) if seal else m))
    return db


def localize(w, db, extra=()):
    return ["localize", "--db", str(db), str(w.pano), "--backend", "torch-cpu", *extra], None


def cut(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# ---- the cases: (setup(w, tmp) -> (argv, folder that must hold no database or None), message) --------

def _zero_pixel(w, tmp):
    tif = _write_tif(tmp / "zero.tif", w.rgb, w.crs, Affine(0.5, 0.0, 733601, 0.0, 0.0, 3725139))
    return build(w, tmp / "out", tif)


def _tiny(w, tmp):
    return build(w, tmp / "out", _write_tif(tmp / "tiny.tif", w.rgb[:, :10, :10].copy(), w.crs,
                                            from_origin(733601, 3725139, 0.5, 0.5)))


def _two_continents(w, tmp):
    munich = _write_tif(tmp / "munich.tif", w.rgb, "EPSG:32632", from_origin(690000, 5336000, 0.5, 0.5))
    return build(w, tmp / "out", w.crop, munich)


def _crs(wkt):
    def setup(w, tmp):
        return build(w, tmp / "out", _write_tif(tmp / "odd_crs.tif", w.rgb, wkt,
                                                from_origin(733601, 3725139, 0.5, 0.5)))
    return setup


def _truncated_tif(w, tmp):
    tif = tmp / "cut.tif"
    shutil.copy(w.rgb_tif, tif)
    cut(tif, 0.6)
    return build(w, tmp / "out", tif)


def _junk_tif(w, tmp):
    (tmp / "junk.tif").write_bytes(b"II*\x00" + b"\x17" * 500)
    return build(w, tmp / "out", tmp / "junk.tif")


def _no_crs(w, tmp):
    with rasterio.open(tmp / "nocrs.tif", "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as dst:
        dst.write(w.rgb[:, :64, :64])
    return build(w, tmp / "out", tmp / "nocrs.tif")


def _two_bands(w, tmp):
    return build(w, tmp / "out", _write_tif(tmp / "two.tif", w.rgb[:2].copy(), w.crs,
                                            from_origin(733601, 3725139, 0.5, 0.5)))


def _out_is_file(w, tmp):
    (tmp / "file").write_text("x")
    return build(w, tmp / "file")[0], None


def _out_foreign(w, tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "notes.txt").write_text("mine")
    return build(w, tmp / "out")


def _out_under_file(w, tmp):
    (tmp / "file").write_text("x")
    return build(w, tmp / "file" / "db")[0], None


def _out_foreign_manifest(w, tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "manifest.json").write_text(json.dumps({"format": "unifygeo_ros/onnx/1"}))
    return build(w, tmp / "out", extra=["--overwrite"])[0], None


def _read_only(w, tmp):
    (tmp / "ro").mkdir()
    os.chmod(tmp / "ro", 0o555)
    return build(w, tmp / "ro" / "db")


def _resume(change):
    def setup(w, tmp):
        out = copy_db(w, tmp, w.unfinished)
        change(out)
        return build(w, out)
    return setup


def _db(change, seal=False, command=localize):
    def setup(w, tmp):
        return command(w, edit_manifest(copy_db(w, tmp), change, seal) if change else copy_db(w, tmp))
    return setup


def _db_file(change, command=localize):
    def setup(w, tmp):
        db = copy_db(w, tmp)
        change(db)
        return command(w, db)
    return setup


def _verify(w, db):
    return ["verify-db", "--db", str(db)], None


def _shift_tiles(db: Path):
    with np.load(db / "tiles.npz") as z:
        t = {k: z[k] for k in z.files}
    t["x"] = t["x"] + 1000.0
    np.savez(db / "tiles.npz", **t)


def _model_outside(m):
    m["model"]["file"] = "../../etc/passwd"
    return m


CASES = {
    # rasters
    "raster truncated": (_truncated_tif, r"cut.tif: its pixels cannot be read .*truncated or damaged"),
    "raster not a GeoTIFF": (_junk_tif, r"junk.tif: not a readable GeoTIFF"),
    "raster zero pixel size": (_zero_pixel, r"zero.tif: the pixel size is zero"),
    "raster without CRS": (_no_crs, r"nocrs.tif: the raster has no coordinate reference system"),
    "raster local CRS": (_crs('LOCAL_CS["arbitrary",UNIT["metre",1]]'), r"odd_crs.tif: its CRS .* is engineering"),
    "raster geocentric CRS": (_crs("EPSG:4978"), r"odd_crs.tif: its CRS .* is geocentric"),
    "raster two bands": (_two_bands, r"two.tif: 2 bands .*expected 1 \(grey\) or 3 \(RGB\)"),
    "raster smaller than a tile": (_tiny, r"tiny.tif: covers 10 x 10 px .*expected at least one tile, 128 x 128"),
    "raster 30 m/px": (lambda w, tmp: build(w, tmp / "out", ALBERS), r"60x coarser than the 0.5 m/px"),
    "rasters on two continents": (_two_continents, r"munich.tif lies [\d,]+ km from .*crop.tif \(UTM 32N and UTM "
                                                   r"16N\).*one database per area"),
    "raster missing": (lambda w, tmp: build(w, tmp / "out", tmp / "none.tif"), r"orthophoto not found"),
    # weights
    "weights NaN": (lambda w, tmp: build(w, tmp / "out", weights=w.root / "nan.pt"),
                    r"--weights .*nan.pt: 1 weight tensor\(s\) hold NaN or infinity"),
    "weights of another configuration": (lambda w, tmp: build(w, tmp / "out", weights=w.root / "other_config.pt"),
                                         r"other_config.pt: checkpoint does not match its model configuration "
                                         r"'paper' \(\d+ tensor\(s\) missing"),
    "weights whose outputs are NaN": (lambda w, tmp: build(w, tmp / "out", weights=w.root / "overflow.pt"),
                                      r"tiles 0-8: the model's descriptors are not finite unit vectors"),
    "weights truncated": (lambda w, tmp: build(w, tmp / "out", weights=w.root / "cut.pt"),
                          r"cut.pt: not a readable checkpoint"),
    "weights missing": (lambda w, tmp: build(w, tmp / "out", weights=tmp / "none.pt"),
                        r"model checkpoint not found"),
    # build options
    "batch size 0": (lambda w, tmp: build(w, tmp / "out", extra=["--batch-size", "0"]),
                     r"--batch-size: expected a whole number >= 1 .*got 0"),
    "batch size -1": (lambda w, tmp: build(w, tmp / "out", extra=["--batch-size", "-1"]),
                      r"--batch-size: expected a whole number >= 1 .*got -1"),
    "overlap 1": (lambda w, tmp: build(w, tmp / "out", extra=["--overlap", "1"]),
                  r"--overlap: expected 0 <= overlap < 1"),
    "overlap negative": (lambda w, tmp: build(w, tmp / "out", extra=["--overlap", "-0.5"]),
                         r"--overlap: expected 0 <= overlap < 1"),
    "overlap nan": (lambda w, tmp: build(w, tmp / "out", extra=["--overlap", "nan"]),
                    r"--overlap: expected 0 <= overlap < 1"),
    "unknown backend": (lambda w, tmp: build(w, tmp / "out", extra=["--backend", "foo"]),
                        r"--backend: unknown backend 'foo'; expected auto"),
    "max upsample 0": (lambda w, tmp: build(w, tmp / "out", extra=["--max-upsample", "0"]),
                       r"--max-upsample: expected a finite number >= 1"),
    # --out
    "out is a file": (_out_is_file, r"--out .*file: is a file; expected a folder"),
    "out holds other files": (_out_foreign, r"--out .*out: holds files that are not a database \(notes.txt\)"),
    "out under a file": (_out_under_file, r"--out .*file/db: cannot create the database folder"),
    "out holds another manifest": (_out_foreign_manifest, r"--out .*out: its manifest.json is not a database's"),
    "out read-only": (_read_only, r"--out .*ro/db: cannot create the database folder"),
    # resuming an unfinished build
    "resume truncated descriptors": (_resume(lambda db: cut(db / "descriptors.npy", 0.5)),
                                     r"descriptors.npy: \d+ bytes, expected \d+ \(truncated\?\); the unfinished "
                                     r"build cannot be resumed"),
    "resume altered finished rows": (_resume(lambda db: flip_byte(db / "features_l1.npy", 200)),
                                     r"features_l1.npy: tiles 0-3 differ from what the build wrote"),
    "resume without hashes": (_resume(lambda db: (db / "build_state.hashes").unlink()),
                              r"build_state.hashes: records the hashes of 0 of the 4 tiles"),
    # database folders
    "db not a database": (lambda w, tmp: localize(w, tmp), r"not a database \(expected a folder with manifest.json"),
    "db manifest a JSON list": (_db_file(lambda db: (db / "manifest.json").write_text("[1, 2]")),
                                r"manifest.json: expected a JSON object .*got a JSON list"),
    "db manifest not JSON": (_db_file(lambda db: (db / "manifest.json").write_text("{oops")),
                             r"manifest.json: unreadable manifest"),
    "db manifest lacks model": (_db(lambda m: {k: v for k, v in m.items() if k != "model"}),
                                r"manifest.json: lacks 'model.hash'"),
    "db origin moved": (_db(lambda m: {**m, "map_frame": {**m["map_frame"], "origin_e": m["map_frame"]["origin_e"]
                                                           + 1000}}),
                        r"manifest.json: the manifest's content does not match its hash"),
    "db metres per pixel x10": (_db(lambda m: {**m, "mpp_grid": m["mpp_grid"] * 10}),
                                r"manifest.json: the manifest's content does not match its hash"),
    "db model file outside": (_db(_model_outside, seal=True),
                              r"manifest.json: model file '../../etc/passwd' is not a file inside the database"),
    "db older format": (_db(lambda m: {**m, "format": "unifygeo_ros/database/1"}),
                        r"format unifygeo_ros/database/1 \(built by an older version"),
    "db unfinished": (lambda w, tmp: localize(w, w.unfinished), r"the build did not finish \(4 of 9 tiles encoded\)"),
    "db tile table shifted": (_db_file(_shift_tiles), r"tiles.npz: its content does not match the sha256"),
    "db tiles.npz truncated": (_db_file(lambda db: cut(db / "tiles.npz", 0.5)),
                               r"tiles.npz: \d+ bytes, expected \d+ \(truncated or replaced\)"),
    "db features truncated": (_db_file(lambda db: cut(db / "features_l2.npy", 0.9)),
                              r"features_l2.npy: \d+ bytes, expected \d+ \(truncated or replaced\)"),
    "db descriptors missing": (_db_file(lambda db: (db / "descriptors.npy").unlink()),
                               r"descriptors.npy: missing"),
    "db index replaced": (_db_file(lambda db: flip_byte(db / "index.faiss", 100)),
                          r"index.faiss: its content does not match the sha256"),
    "db features damaged (verify-db)": (_db_file(lambda db: flip_byte(db / "features_l1.npy", 5000), command=_verify),
                                        r"features_l1.npy: its content does not match the sha256"),
    # localize options
    "localize --distribution a folder": (lambda w, tmp: localize(w, w.db, ["--distribution", str(tmp)]),
                                         r"--distribution .*: is a folder; expected the name of a PNG file"),
    "localize --distribution not png": (lambda w, tmp: localize(w, w.db, ["--distribution", str(tmp / "d.txt")]),
                                        r"--distribution .*d.txt: expected a file name ending in .png"),
    "localize --distribution under a file": (lambda w, tmp: localize(w, w.db, ["--distribution",
                                                                                str(w.crop / "d.png")]),
                                             r"--distribution .*crop.tif is a file, not a folder"),
}


def _run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _manifest(folder: Path | None) -> str | None:
    path = folder / "manifest.json" if folder is not None else None
    return path.read_text() if path is not None and path.is_file() else None


def _no_database(folder: Path | None, before: str | None) -> None:
    """No database was written: the folder's manifest is what it was (none, or an unfinished
    build's), and no temporary build is left beside it."""
    if folder is None:
        return
    assert _manifest(folder) == before, f"{folder}: the manifest changed"
    assert not list(folder.parent.glob(folder.name + ".tmp-*")), "a temporary build was left behind"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_2(name, w, tmp_path, capsys):
    setup, message = CASES[name]
    if name == "out read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    argv, folder = setup(w, tmp_path)
    before = _manifest(folder)
    rc, out, err = _run(argv, capsys)
    assert rc == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("unifygeo ")]
    assert out == "" and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(message, lines[0]), lines[0]
    _no_database(folder, before)
    rc, out, err = _run([*argv, "--json"], capsys)
    assert rc == 2 and len(out.splitlines()) == 1, (out, err)
    report = json.loads(out)
    assert list(report) == ["error"] and re.search(message, report["error"]), report
    _no_database(folder, before)


@pytest.mark.parametrize("name", ["batch size 0", "db tiles.npz truncated"])
def test_bad_input_in_a_real_process(name, w, tmp_path):
    """The console command itself: exit status 2, one line on stderr (one JSON object on
    stdout with --json), no traceback."""
    argv, _ = CASES[name][0](w, tmp_path)
    for flag in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-m", "unifygeo_ros", *argv, *flag], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        if flag:
            assert list(json.loads(proc.stdout)) == ["error"]
        else:
            assert proc.stdout == "" and proc.stderr.strip().count("\n") == 0, proc.stderr


# ---- what is accepted, and what an overwrite leaves ----------------------------------------------

def test_south_up_raster_builds_the_same_database(w, tmp_path):
    """A GeoTIFF stored south-up (positive row step) is flipped into the north-up grid: the
    same tiles, pixels and descriptors as the north-up original."""
    out = tmp_path / "south"
    build_database(BuildConfig([str(w.south)], str(w.weights), str(out), backend="torch-cpu"), progress=False)
    a, b = Database(w.db), Database(out, verify="full")
    assert b.manifest["sources"][0]["south_up"] and b.mpp == a.mpp
    for k in ("row0", "col0", "e", "n", "lat", "lon"):
        np.testing.assert_array_equal(a.tiles[k], b.tiles[k])
    for t in (0, 4, 8):
        np.testing.assert_array_equal(a.tile_image(t)[0], b.tile_image(t)[0])
    np.testing.assert_allclose(np.asarray(a.descriptors), np.asarray(b.descriptors), atol=1e-6)


def test_integrity_record_and_verify_levels(w, tmp_path, capsys):
    """Every file is in the record; quick checks sizes and the files read whole, full every hash."""
    db = Database(w.db)
    files = db.manifest["integrity"]["files"]
    assert sorted(files) == sorted(["model.pt", "tiles.npz", "descriptors.npy", "index.faiss",
                                    *(f"features_l{lv}.npy" for lv in range(4))])
    assert db.verified["level"] == "quick" and db.verified["bytes_hashed"] < db.verified["bytes"]
    assert Database(w.db, verify="full").verified["bytes_hashed"] == db.verified["bytes"]
    rc, out, _ = _run(["verify-db", "--db", str(w.db), "--json"], capsys)
    assert rc == 0 and json.loads(out)["ok"] and json.loads(out)["files"] == 8
    copy = copy_db(w, tmp_path)
    flip_byte(copy / "descriptors.npy", 1000)            # memory-mapped: quick passes, full does not
    Database(copy)
    with pytest.raises(DatabaseError, match="descriptors.npy: its content does not match"):
        Database(copy, verify="full")


def test_overwrite_builds_beside_and_keeps_the_old_database_until_done(w, tmp_path):
    out = copy_db(w, tmp_path)
    before = json.loads((out / "manifest.json").read_text())["integrity"]["manifest_sha256"]
    cfg = BuildConfig([str(w.crop)], str(w.weights), str(out), backend="torch-cpu", batch_size=4, overwrite=True,
                      turns=1)
    seen = []

    def stop(done, total):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_database(cfg, progress=False, on_batch=stop)
    assert any(name.startswith("copy.tmp-") for name in seen[0])          # the new one was built beside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]        # and removed when interrupted
    assert Database(out, verify="full").turns == 4                       # the old one, untouched
    assert json.loads((out / "manifest.json").read_text())["integrity"]["manifest_sha256"] == before
    build_database(cfg, progress=False)
    assert Database(out, verify="full").turns == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]
