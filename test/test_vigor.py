"""VIGOR layout: label conventions on the real corrected labels, the loader, vigor-check,
and the synthetic VIGOR export (geometry, balance, determinism, loader round trip)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from unifygeo_ros.cli import main as cli_main
from unifygeo_ros.data.vigor import (
    VIGOR_MPP_640,
    VigorFormatError,
    VigorIndex,
    VigorPairDataset,
    VigorQueryDataset,
    VigorReferenceDataset,
    gps_label_offsets,
    label_to_pixel,
    panorama_file_name,
    parse_label_line,
    parse_panorama_name,
    parse_satellite_name,
    pixel_to_label,
    read_label_file,
    satellite_file_name,
)
from unifygeo_ros.geo import enu_offset_m

REAL = Path(__file__).parent / "data" / "vigor_labels"


def run_cli(capsys, *argv):
    code = cli_main(list(argv))
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    return code, json.loads(lines[0])


# ---------------------------------------------------------------------------------------
# Real label sample: the sign convention and vigor-check
# ---------------------------------------------------------------------------------------

def test_real_sample_is_present_with_licence():
    assert (REAL / "NOTICE").is_file() and (REAL / "LICENSE-Apache-2.0.txt").is_file()
    assert "Apache" in (REAL / "NOTICE").read_text()
    assert sorted(p.name for p in (REAL / "splits__corrected").iterdir()) == [
        "Chicago", "NewYork", "SanFrancisco", "Seattle"]


def test_sign_convention_against_real_labels():
    """row = 320 + dr, col = 320 - dc: i.e. dr = -north/mpp, dc = -east/mpp. Every other
    sign combination disagrees with the GPS by hundreds of pixels."""
    for city in ("Chicago", "NewYork", "Seattle"):
        mpp = VIGOR_MPP_640[city]
        lines = read_label_file(REAL / "splits__corrected" / city / "same_area_balanced_test__corrected.txt")
        errs = {s: [] for s in [(1, 1), (1, -1), (-1, 1), (-1, -1)]}
        for ln in lines:
            _, lat, lon = parse_panorama_name(ln.panorama)
            for s, (dr, dc) in zip(ln.satellites, ln.offsets):
                slat, slon = parse_satellite_name(s)
                east, north = enu_offset_m(slat, slon, lat, lon)
                for sr, sc in errs:
                    # candidate: dr = sr * (-north/mpp), dc = sc * (-east/mpp)
                    errs[(sr, sc)].append(np.hypot(dr - sr * -north / mpp, dc - sc * -east / mpp))
        med = {k: float(np.median(v)) for k, v in errs.items()}
        assert med[(1, 1)] < 4.0, (city, med)
        assert min(med[k] for k in med if k != (1, 1)) > 150.0, (city, med)
        # the camera pixel in the tile: north of the centre is a smaller row, east a larger column
        ln = lines[0]
        _, lat, lon = parse_panorama_name(ln.panorama)
        slat, slon = parse_satellite_name(ln.satellites[0])
        east, north = enu_offset_m(slat, slon, lat, lon)
        row, col = label_to_pixel(*ln.offsets[0])
        assert abs(row - (320 - north / mpp)) < 6 and abs(col - (320 + east / mpp)) < 6


def test_vigor_check_real_sample_passes(capsys):
    code, r = run_cli(capsys, "vigor-check", "--root", str(REAL), "--json")
    assert code == 0 and r["passed"], r
    assert r["labels"] == "corrected"
    assert r["lines"] == 450
    assert r["median_err_px"] <= 5.0
    assert r["max_err_px"] < 8.0
    for city in ("Chicago", "NewYork", "Seattle"):
        c = r["cities"][city]
        assert c["lines"] == 150 and c["median_err_px"] <= 5.0
        assert c["missing_panoramas"] == 150      # a label excerpt: no images on disk
    assert r["cities"]["SanFrancisco"]["lines"] == 0
    assert r["cities"]["SanFrancisco"]["tiles_listed"] == 300
    assert r["images"].startswith("none present")
    assert r["panoramas_listed"] == 450 and r["tiles_listed"] == 1200


def test_vigor_check_fails_on_tight_threshold_and_bad_input(capsys):
    code, r = run_cli(capsys, "vigor-check", "--root", str(REAL), "--max-median-px", "1.0", "--json")
    assert code == 1 and not r["passed"] and len(r["failures"]) == 3
    code, r = run_cli(capsys, "vigor-check", "--root", str(REAL / "nope"), "--json")
    assert code == 2 and "expected a directory" in r["error"]
    code, r = run_cli(capsys, "vigor-check", "--root", str(REAL), "--cities", "Paris", "--json")
    assert code == 2 and "Paris" in r["error"] and "NewYork" in r["error"]
    code, r = run_cli(capsys, "vigor-check", "--root", str(REAL), "--labels", "original", "--json")
    assert code == 2 and "splits" in r["error"]


def test_vigor_check_detects_corrupted_offsets(tmp_path, capsys):
    root = tmp_path / "v"
    shutil.copytree(REAL, root)
    path = root / "splits__corrected" / "NewYork" / "same_area_balanced_test__corrected.txt"
    rows = [parse_label_line(ln) for ln in path.read_text().splitlines()]
    for r in rows:
        r.offsets[:, 1] *= -1.0           # flip the column sign
    path.write_text("".join(r.format() + "\n" for r in rows))
    code, r = run_cli(capsys, "vigor-check", "--root", str(root), "--json")
    assert code == 1 and r["cities"]["NewYork"]["median_err_px"] > 50
    assert r["cities"]["Chicago"]["median_err_px"] <= 5.0


# ---------------------------------------------------------------------------------------
# Names and label lines
# ---------------------------------------------------------------------------------------

def test_names_round_trip():
    name = panorama_file_name("s-0__SnpcZyNsnt7JA2_hw", 40.749783, -73.981849)
    assert name == "s-0__SnpcZyNsnt7JA2_hw,40.749783,-73.981849,.jpg"
    assert parse_panorama_name(name) == ("s-0__SnpcZyNsnt7JA2_hw", 40.749783, -73.981849)
    lat, lon = 41.877971796211014, -87.68943505304125
    assert parse_satellite_name(satellite_file_name(lat, lon)) == (lat, lon)
    assert satellite_file_name(lat, lon) == "satellite_41.877971796211014_-87.68943505304125.png"
    with pytest.raises(VigorFormatError, match="satellite_<lat>_<lon>"):
        parse_satellite_name("tile_1_2.png")
    with pytest.raises(VigorFormatError, match="13 fields"):
        parse_label_line("a,1,2,.jpg satellite_1_2.png 1.0 2.0")
    row, col = label_to_pixel(23.0, -29.0)
    assert (row, col) == (343.0, 349.0)
    assert tuple(float(v) for v in pixel_to_label(row, col)) == (23.0, -29.0)


def test_real_line_format_round_trips():
    raw = (REAL / "splits__corrected" / "Chicago" / "same_area_balanced_test__corrected.txt").read_text().splitlines()[0]
    assert parse_label_line(raw).format() == raw


# ---------------------------------------------------------------------------------------
# Loader on the real layout
# ---------------------------------------------------------------------------------------

def test_loader_real_layout_index_and_errors():
    idx = VigorIndex(REAL, "same_area", "test", cities=["NewYork", "Chicago"])
    assert len(idx.panoramas) == 300
    assert idx.vroot.suffix == "__corrected"
    assert {s.city for s in idx.satellites} == {"NewYork", "Chicago"}
    # the excerpt's satellite lists lack most referenced tiles: they are added, flagged
    assert any(not s.listed for s in idx.satellites) and sum(s.listed for s in idx.satellites) == 600
    rec = idx.panoramas[0]
    assert idx.satellites[rec.satellites[0]].name.startswith("satellite_")
    assert rec.path.parts[-3:-1] == ("NewYork", "panorama")
    # default cities for same-area: all folders; SanFrancisco has no test label file here
    with pytest.raises(VigorFormatError, match="same_area_balanced_test__corrected.txt"):
        VigorIndex(REAL, "same_area", "test")
    # cross-area uses pano_label_balanced (absent from the excerpt): the error names it
    with pytest.raises(VigorFormatError, match="pano_label_balanced__corrected.txt"):
        VigorIndex(REAL, "cross_area", "train")
    with pytest.raises(VigorFormatError, match="Paris"):
        VigorIndex(REAL, "same_area", "test", cities=["Paris"])
    with pytest.raises(VigorFormatError, match="protocol/split"):
        VigorIndex(REAL, "same_area", "val")
    with pytest.raises(VigorFormatError, match="expected a directory"):
        VigorIndex(REAL / "missing")
    with pytest.raises(VigorFormatError, match="splits"):
        VigorIndex(REAL, labels="original")


def test_loader_real_layout_pixels_and_missing_images():
    ds = VigorQueryDataset(REAL, "same_area", "test", cities=["Seattle"], ground_size=(64, 128), aerial_size=128)
    assert len(ds) == 150
    rec = ds.index.panoramas[0]
    row, col = ds.resized_pixel(0)
    assert row == pytest.approx((320 + rec.offsets[0, 0]) * 128 / 640)
    assert col == pytest.approx((320 - rec.offsets[0, 1]) * 128 / 640)
    assert ds.tile_mpp(int(rec.satellites[0])) == pytest.approx(0.100817 * 5)
    with pytest.raises(FileNotFoundError, match="panorama"):
        ds[0]
    assert ds.positives().shape == (150, 4)
    ref = VigorReferenceDataset(ds.index, aerial_size=128)
    assert len(ref) == len(ds.index.satellites)
    with pytest.raises(FileNotFoundError, match="satellite"):
        ref[0]


# ---------------------------------------------------------------------------------------
# Grid vs true north: rendered geometry of a true-north-up tile and a north-aligned panorama
# ---------------------------------------------------------------------------------------

# UTM zone 10 spans -126..-120 degrees: at -120.3 the meridian convergence is about +2 degrees,
# so a wrong sign would misplace things by ~4 degrees of rotation.
FAR_LAT, FAR_LON = 47.6, -120.3


def _one_object_city(obj_kind: str, east: float, north: float, size: float):
    from unifygeo_ros.geo import latlon_from_enu_offset
    from unifygeo_ros.sim.world import Tree, box_building, city_from_primitives

    probe = city_from_primitives(200.0, FAR_LAT, FAR_LON)
    frame = probe.frame
    lat_c, lon_c = (float(v) for v in frame.to_latlon(100.0, 100.0))
    gamma = frame.convergence_deg(100.0, 100.0)
    olat, olon = latlon_from_enu_offset(lat_c, lon_c, east, north)
    ox, oy = (float(v) for v in frame.from_latlon(olat, olon))
    if obj_kind == "roof":
        objs = {"buildings": [box_building((ox, oy), size, size, 3.0, yaw_deg=gamma, roof_colour=(250, 20, 20),
                                           roof_kind="membrane")]}
    else:
        objs = {"trees": [Tree(ox, oy, 0.4, 8.0, size, 4.0, (20, 200, 20), (90, 60, 30))]}
    city = city_from_primitives(200.0, FAR_LAT, FAR_LON, **objs)
    return city, lat_c, lon_c, gamma


def test_true_north_up_tile_places_a_roof_at_its_true_offset():
    from unifygeo_ros.sim.vigor_export import render_vigor_tile

    east, north, mpp, px = 15.0, 20.0, 0.2, 256
    city, lat_c, lon_c, gamma = _one_object_city("roof", east, north, 4.0)
    assert gamma > 1.5          # the test is only sensitive when grid and true north differ
    tile = render_vigor_tile(city, lat_c, lon_c, px, mpp).astype(int)
    red = (tile[..., 0] > 150) & (tile[..., 1] < 110) & (tile[..., 2] < 110)
    assert 300 < red.sum() < 500         # a 4 m x 4 m roof at 0.2 m/px is 400 px
    rows, cols = np.nonzero(red)
    row, col = rows.mean() + 0.5, cols.mean() + 0.5
    dr, dc = pixel_to_label(row, col, px)
    # the label convention: dr = -north/mpp, dc = -east/mpp
    assert abs(dr - (-north / mpp)) < 0.75 and abs(dc - (-east / mpp)) < 0.75, (row, col)


def test_north_aligned_panorama_has_true_north_at_the_centre_column():
    from unifygeo_ros.sim.vigor_export import render_vigor_panorama

    W, H = 720, 180
    city, lat_c, lon_c, gamma = _one_object_city("tree", 0.0, 30.0, 3.0)
    pano = render_vigor_panorama(city, lat_c, lon_c, W, H).astype(int)
    green = (pano[..., 1] - pano[..., 0] > 40) & (pano[..., 1] - pano[..., 2] > 40)   # the crown, 30 m away
    cols = np.nonzero(green.any(axis=0))[0]
    assert 5 < len(cols) < 60, len(cols)
    centre = cols.mean() + 0.5
    assert abs(centre - W / 2) < 1.5, (centre, gamma)
    # and it is not where the grid north would put it
    assert abs(centre - (W / 2 - gamma / 360 * W)) > 2.0


# ---------------------------------------------------------------------------------------
# Synthetic export (helper-1's city and renderers) -> vigor-check -> loader
# ---------------------------------------------------------------------------------------

SYN = dict(tile_px=128, mpp=0.25, pano=(128, 64))


def _export_argv(city_dir, root, name, n, seed, workers=1):
    return ["sim", "vigor", "--city", str(city_dir), "--panoramas", str(n), "--out", str(root), "--city-name", name,
            "--pano-size", f"{SYN['pano'][0]}x{SYN['pano'][1]}", "--tile-px", str(SYN["tile_px"]),
            "--mpp", str(SYN["mpp"]), "--seed", str(seed), "--workers", str(workers), "--json"]


def _export(capsys, city_dir, root, name, n, seed):
    code = cli_main(_export_argv(city_dir, root, name, n, seed))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return code, json.loads(out[0])


def _export_quiet(city_dir, root, name, n, seed, workers=1):
    """For module fixtures (no capsys): the JSON line via a redirected stdout."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli_main(_export_argv(city_dir, root, name, n, seed, workers))
    assert code == 0, buf.getvalue()
    return json.loads(buf.getvalue())


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A 220 m city exported twice into one VIGOR root: Alpha (16 panoramas), Beta (8)."""
    from unifygeo_ros.sim.world import generate_city

    base = tmp_path_factory.mktemp("synth")
    city_dir = base / "city"
    generate_city(5, 220.0, FAR_LAT, FAR_LON).save(city_dir)
    root = base / "VIGOR"
    results = {name: _export_quiet(city_dir, root, name, n, seed) for name, n, seed in (("Alpha", 16, 1), ("Beta", 8, 2))}
    return {"root": root, "city_dir": city_dir, "results": results}


def test_synthetic_export_passes_vigor_check_within_1px(synth, capsys):
    code, r = run_cli(capsys, "vigor-check", "--root", str(synth["root"]), "--max-median-px", "1",
                      "--max-max-px", "1", "--require-images", "--json")
    assert code == 0 and r["passed"], r
    assert r["labels"] == "original"
    assert r["median_err_px"] <= 1.0 and r["max_err_px"] <= 1.0
    assert r["images"] == "all present" and r["missing_panoramas"] == r["missing_satellites"] == 0
    for name, n in (("Alpha", 16), ("Beta", 8)):
        c = r["cities"][name]
        assert c["mpp"] == SYN["mpp"] and c["tile_px"] == SYN["tile_px"] and c["mpp_source"].endswith("meta.json")
        assert c["panoramas_listed"] == n and c["lines"] == 2 * n     # same-area split files + pano_label
        assert c["median_err_px"] <= 1.0 and c["max_err_px"] <= 1.0
        assert c["tiles_referenced_not_listed"] == 0
        assert c["max_positives_per_tile"] <= 2
        assert c["positives_outside_central_quarter"] == 0


def test_synthetic_export_layout(synth):
    import cv2

    root = synth["root"]
    res = synth["results"]["Alpha"]
    assert res["panoramas"] == 16 and res["train"] + res["test"] == 16 and res["max_positives_per_tile"] <= 2
    split = root / "splits" / "Alpha"
    listed = (split / "satellite_list.txt").read_text().split()
    assert sorted(listed) == sorted(p.name for p in (root / "Alpha" / "satellite").iterdir())
    assert len(listed) == res["tiles"]
    train = read_label_file(split / "same_area_balanced_train.txt")
    test = read_label_file(split / "same_area_balanced_test.txt")
    full = read_label_file(split / "pano_label_balanced.txt")
    assert {ln.panorama for ln in train}.isdisjoint({ln.panorama for ln in test})
    assert sorted(ln.panorama for ln in train + test) == sorted(ln.panorama for ln in full)
    assert sorted(p.name for p in (root / "Alpha" / "panorama").iterdir()) == sorted(ln.panorama for ln in full)
    assert all(f.format().count(" ") == 12 for f in full)
    T = SYN["tile_px"]
    positives = {}
    for ln in full:
        assert set(ln.satellites) <= set(listed) and len(set(ln.satellites)) == 4
        rows, cols = label_to_pixel(ln.offsets[:, 0], ln.offsets[:, 1], T)
        assert (np.abs(ln.offsets[0]) <= T / 4 + 0.5).all()                  # central quarter
        assert ((rows >= 0) & (rows <= T) & (cols >= 0) & (cols <= T)).all()  # all four contain it
        assert np.allclose(ln.offsets, np.rint(ln.offsets))                  # whole pixels, like VIGOR
        positives[ln.satellites[0]] = positives.get(ln.satellites[0], 0) + 1
        # the semi-positives are the neighbours on the half-tile grid
        lats = sorted({parse_satellite_name(s)[0] for s in ln.satellites})
        lons = sorted({parse_satellite_name(s)[1] for s in ln.satellites})
        assert len(lats) == 2 and len(lons) == 2
        north = enu_offset_m(lats[0], lons[0], lats[1], lons[0])[1]
        east = enu_offset_m(lats[0], lons[0], lats[0], lons[1])[0]
        assert north == pytest.approx(T / 2 * SYN["mpp"], abs=0.01)
        assert east == pytest.approx(T / 2 * SYN["mpp"], abs=0.01)
    assert max(positives.values()) <= 2
    meta = json.loads((root / "Alpha" / "meta.json").read_text())
    assert meta["mpp"] == SYN["mpp"] and meta["tile_px"] == T and meta["north"] == "true"
    assert meta["source_city"]["seed"] == 5 and meta["source_city"]["style"] == "default"
    assert "crs_wkt" in meta["map_frame"]
    pano = cv2.imread(str(root / "Alpha" / "panorama" / full[0].panorama))
    tile = cv2.imread(str(root / "Alpha" / "satellite" / listed[0]))
    assert pano.shape == (SYN["pano"][1], SYN["pano"][0], 3) and tile.shape == (T, T, 3)


def test_synthetic_images_are_rendered_at_the_names_positions(synth):
    from unifygeo_ros.data.vigor import read_rgb
    from unifygeo_ros.sim.vigor_export import render_vigor_panorama, render_vigor_tile
    from unifygeo_ros.sim.world import City

    city = City.load(synth["city_dir"])
    root = synth["root"]
    ln = read_label_file(root / "splits" / "Alpha" / "pano_label_balanced.txt")[3]
    tile = read_rgb(root / "Alpha" / "satellite" / ln.satellites[0])
    again = render_vigor_tile(city, *parse_satellite_name(ln.satellites[0]), SYN["tile_px"], SYN["mpp"])
    assert np.array_equal(tile, again)                                       # PNG is lossless
    _, lat, lon = parse_panorama_name(ln.panorama)
    pano = read_rgb(root / "Alpha" / "panorama" / ln.panorama).astype(int)
    again = render_vigor_panorama(city, lat, lon, *SYN["pano"]).astype(int)
    assert np.abs(pano - again).mean() < 4.0                                 # JPEG noise only
    shifted = np.roll(again, 8, axis=1)
    assert np.abs(pano - shifted).mean() > np.abs(pano - again).mean() + 2.0


def test_synthetic_export_is_deterministic(synth, tmp_path):
    root2 = tmp_path / "again"
    _export_quiet(synth["city_dir"], root2, "Beta", 8, 2, workers=2)     # in parallel this time
    a, b = synth["root"], root2
    for rel in ("splits/Beta/satellite_list.txt", "splits/Beta/same_area_balanced_train.txt",
                "splits/Beta/same_area_balanced_test.txt", "splits/Beta/pano_label_balanced.txt"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    for sub in ("panorama", "satellite"):
        names = sorted(p.name for p in (a / "Beta" / sub).iterdir())
        assert names == sorted(p.name for p in (b / "Beta" / sub).iterdir())
        for n in names:
            assert (a / "Beta" / sub / n).read_bytes() == (b / "Beta" / sub / n).read_bytes()
    # a different seed gives different panoramas
    c = (a / "splits" / "Alpha" / "pano_label_balanced.txt").read_text()
    assert c != (a / "splits" / "Beta" / "pano_label_balanced.txt").read_text()


def test_export_errors(synth, tmp_path, capsys):
    code, r = _export(capsys, synth["city_dir"], synth["root"], "Alpha", 4, 9)
    assert code == 2 and "not empty" in r["error"]
    code, r = _export(capsys, synth["city_dir"], tmp_path / "v", "Huge", 5000, 1)
    assert code == 2 and "holds only" in r["error"] and "at most 2 per positive tile" in r["error"]
    code, r = _export(capsys, tmp_path / "nocity", tmp_path / "v2", "X", 4, 1)
    assert code == 2 and "city.json" in r["error"]
    assert cli_main(["sim", "vigor", "--city", str(synth["city_dir"]), "--panoramas", "4", "--out", str(tmp_path),
                     "--pano-size", "768by384"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_loader_reads_synthetic_export(synth):
    import torch

    root = synth["root"]
    T, L = SYN["tile_px"], 64
    calls = []

    def hook(sample):
        calls.append(sorted(sample))
        assert 0.0 <= float(sample["ground"].min()) and float(sample["ground"].max()) <= 1.0
        return sample

    pairs = VigorPairDataset(root, "same_area", "train", cities=["Alpha"], ground_size=(32, 64), aerial_size=L,
                             normalize=False, transform=hook)
    res = synth["results"]["Alpha"]
    assert len(pairs) == res["train"]
    s = pairs[0]
    assert calls and s["ground"].shape == (3, 32, 64) and s["aerial"].shape == (3, L, L)
    assert s["ground"].dtype == torch.float32 and 0.0 <= float(s["aerial"].min()) <= float(s["aerial"].max()) <= 1.0
    assert float(s["yaw_deg"]) == 90.0
    assert float(s["mpp"]) == pytest.approx(SYN["mpp"] * T / L)
    rec = pairs.index.panoramas[s["pano_index"]]
    assert s["sat_index"] == int(rec.satellites[0]) and s["tile_rank"] == 0
    # the pixel, from the GPS in the names, rescaled to L
    dr, dc = gps_label_offsets(rec.name, [pairs.index.satellites[s["sat_index"]].name], SYN["mpp"])[0]
    row, col = label_to_pixel(dr, dc, T)
    assert float(s["pixel"][0]) == pytest.approx(row * L / T, abs=0.5 * L / T + 1e-6)
    assert float(s["pixel"][1]) == pytest.approx(col * L / T, abs=0.5 * L / T + 1e-6)
    # normalised by default
    norm = VigorPairDataset(pairs.index, ground_size=(32, 64), aerial_size=L)[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(norm["ground"], (s["ground"] - mean) / std, atol=1e-5)
    # semi-positives as extra items: every pixel inside the tile
    semi = VigorPairDataset(pairs.index, ground_size=(32, 64), aerial_size=L, semi_positives=True)
    assert len(pairs) < len(semi) <= 4 * len(pairs)
    for i in range(len(semi)):
        p, k = semi.items[i]
        r_, c_ = semi.resized_pixel(p, k)
        assert 0 <= r_ < L and 0 <= c_ < L
    # retrieval: queries (test split) and references (all listed tiles)
    q = VigorQueryDataset(root, "same_area", "test", cities=["Alpha", "Beta"], ground_size=(32, 64), aerial_size=L)
    ref = VigorReferenceDataset(q.index, aerial_size=L)
    assert len(q) == res["test"] + synth["results"]["Beta"]["test"]
    assert len(ref) == res["tiles"] + synth["results"]["Beta"]["tiles"]
    assert all(s_.listed for s_ in q.index.satellites)
    item = q[len(q) - 1]
    assert q.index.panoramas[len(q) - 1].city == "Beta"
    names = [ref.index.satellites[int(i)].name for i in [item["positive"], *item["semi_positives"].tolist()]]
    assert names == list(read_label_file(root / "splits" / "Beta" / "same_area_balanced_test.txt")[-1].satellites)
    assert ref[item["positive"]]["aerial"].shape == (3, L, L)
    # cross-area with configurable cities; the real-VIGOR defaults are missing here
    train = VigorPairDataset(root, "cross_area", "train", cities=["Alpha"], ground_size=(32, 64), aerial_size=L)
    test = VigorQueryDataset(root, "cross_area", "test", cities="Beta", ground_size=(32, 64), aerial_size=L)
    assert len(train) == 16 and len(test) == 8
    with pytest.raises(VigorFormatError, match="pass cities"):
        VigorQueryDataset(root, "cross_area", "test")
    # same-area default: every city under splits/
    assert VigorIndex(root, "same_area", "train").cities == ["Alpha", "Beta"]


def test_bench_sim_quick_json_shape(capsys):
    code, r = run_cli(capsys, "bench", "sim", "--quick", "--json")
    assert code == 0
    assert r["quick"] is True and r["targets_apply"] is False
    assert set(r["machine"]) >= {"cpu_count", "platform"}
    p, e = r["panorama"], r["city_export"]
    assert p["width"] == 512 and p["height"] == 128 and p["renders"] >= 5 and p["median_ms"] > 0
    assert p["target_ms"] == 50.0 and isinstance(p["met"], bool)
    assert e["panoramas"] > 0 and e["tiles"] > 0 and e["total_s"] > 0
    assert e["target_s"] == 600.0 and isinstance(e["met"], bool)
    assert isinstance(r["all_met"], bool)
