"""The procedural city: determinism, save/load, styles, queries and the ``unifygeo sim`` commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from unifygeo_ros.cli import main
from unifygeo_ros.sim import _geom, render
from unifygeo_ros.sim.world import (City, CityStyle, STYLE_PRESETS, Tree, box_building, city_from_primitives,
                                    generate_city)

ORIGIN = (47.37, 8.54)


@pytest.fixture(scope="module")
def city():
    return generate_city(21, 300.0, *ORIGIN, "default")


def _renders(c: City):
    xy = c.street_positions(2, np.random.default_rng(0))
    return [render.render_panorama(c, xy[0], 33.0, 256, 128), render.render_ortho(c, xy[1], 200, 0.2, 12.0)]


def test_same_seed_same_world_bit_for_bit(tmp_path, city):
    again = generate_city(21, 300.0, *ORIGIN, "default")
    city.save(tmp_path / "a")
    again.save(tmp_path / "b")
    assert (tmp_path / "a" / "city.json").read_bytes() == (tmp_path / "b" / "city.json").read_bytes()
    for x, y in zip(_renders(city), _renders(again)):
        assert np.array_equal(x, y)


def test_other_seed_other_world(city):
    other = generate_city(22, 300.0, *ORIGIN, "default")
    assert json.dumps(other.to_dict()) != json.dumps(city.to_dict())


def test_save_load_round_trip_renders_identically(tmp_path, city):
    path = city.save(tmp_path)
    loaded = City.load(tmp_path)
    assert path.name == "city.json"
    assert loaded.to_dict() == city.to_dict()
    assert loaded.frame == city.frame
    for x, y in zip(_renders(city), _renders(loaded)):
        assert np.array_equal(x, y)


def test_load_rejects_other_files(tmp_path):
    (tmp_path / "city.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a unifygeo-city"):
        City.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        City.load(tmp_path / "missing")


def test_city_is_a_plausible_town(city):
    n = city.counts()
    assert n["buildings"] > 40 and n["trees"] > 40 and n["cars"] > 10 and n["roads"] > 10 and n["poles"] > 5
    heights = np.array([b.height for b in city.buildings])
    assert heights.min() >= 3.0 and heights.max() <= 40.0
    assert len(np.unique(np.round(heights))) > 8
    assert len({b.facade_colour for b in city.buildings}) > 0.8 * len(city.buildings)
    assert len({b.roof_colour for b in city.buildings}) > 0.5 * len(city.buildings)
    assert {g.kind for g in city.ground} >= {"block", "path"} or {g.kind for g in city.ground} >= {"block", "parking"}
    for b in city.buildings:
        assert _geom.signed_area(b.footprint) > 0  # CCW
        assert np.all((b.footprint >= 0) & (b.footprint <= city.size_m))
    assert min(t.crown_bottom for t in city.trees) > 2.5  # cameras (<= 2.5 m) are never inside a crown
    # roads are not a single grid: several directions and some curvature
    directions = []
    for r in city.roads:
        d = r.points[-1] - r.points[0]
        directions.append(math.degrees(math.atan2(d[1], d[0])) % 90.0)
    assert np.ptp(directions) > 5.0


def test_styles_make_different_cities():
    suburb = generate_city(3, 300.0, *ORIGIN, "suburb")
    downtown = generate_city(3, 300.0, *ORIGIN, "downtown")
    h_sub = np.mean([b.height for b in suburb.buildings])
    h_down = np.mean([b.height for b in downtown.buildings])
    assert h_sub < 10.0 < h_down
    assert len(suburb.trees) > len(downtown.trees)
    assert {b.facade_colour for b in suburb.buildings}.isdisjoint({b.facade_colour for b in downtown.buildings})
    with pytest.raises(ValueError, match="unknown city style"):
        generate_city(3, 300.0, *ORIGIN, "atlantis")
    with pytest.raises(ValueError, match="height_range_m"):
        CityStyle(height_range_m=(2.0, 50.0))
    assert set(STYLE_PRESETS) >= {"default", "suburb", "downtown"}
    style = CityStyle.preset("downtown")
    assert CityStyle.from_dict(json.loads(json.dumps(style.to_dict()))) == style


def test_street_positions_are_on_streets_and_clear(city):
    pts = city.street_positions(200, np.random.default_rng(5), min_clearance_m=1.0)
    assert pts.shape == (200, 2)
    assert np.all((pts >= 5.0) & (pts <= city.size_m - 5.0))
    assert city.road_surface(pts).all()
    assert city.is_free(pts, 1.0).all()
    # exact check against building footprints, trunks and cars
    for b in city.buildings:
        assert not _geom.points_in_polygon(pts, b.footprint).any()
        a, c = b.footprint, np.roll(b.footprint, -1, axis=0)
        assert _geom.segment_distance(pts, a, c).min() >= 1.0
    trunks = np.array([(t.x, t.y, t.trunk_radius) for t in city.trees])
    assert np.min(np.linalg.norm(pts[:, None] - trunks[None, :, :2], axis=2) - trunks[None, :, 2]) >= 1.0
    for car in city.cars:
        fp = car.footprint()
        assert _geom.segment_distance(pts, fp, np.roll(fp, -1, axis=0)).min() >= 1.0
    again = city.street_positions(200, np.random.default_rng(5), min_clearance_m=1.0)
    assert np.array_equal(pts, again)


def test_road_route_follows_the_roads(city):
    route = city.road_route(400.0, np.random.default_rng(2))
    steps = np.linalg.norm(np.diff(route, axis=0), axis=1)
    assert steps.max() <= 2.0 and steps.min() > 0.05  # (U-turns at dead ends make short chords)
    assert 380.0 <= steps.sum() <= 401.0
    assert city.road_surface(route, include_sidewalk=False).all()
    assert city.is_free(route, 0.3).all()
    assert np.all((route >= 0) & (route <= city.size_m))


def test_is_free_sees_buildings_trunks_and_cars():
    b = box_building((50.0, 50.0), 10.0, 10.0, 12.0)
    t = Tree(x=80.0, y=80.0, trunk_radius=0.3, crown_z=6.0, crown_radius=3.0, crown_half_height=2.5,
             colour=(60, 100, 40), trunk_colour=(70, 60, 50))
    c = city_from_primitives(120.0, buildings=[b], trees=[t])
    pts = np.array([[50.0, 50.0], [54.9, 45.1], [80.0, 80.0], [80.1, 80.2], [30.0, 30.0], [56.0, 50.0], [80.0, 82.0]])
    assert c.is_free(pts).tolist() == [False, False, False, False, True, True, True]
    assert not c.is_free(np.array([56.0, 50.0]), clearance_m=1.5)
    assert c.is_free(np.array([58.0, 50.0]), clearance_m=1.5)


def test_bad_generation_arguments():
    with pytest.raises(ValueError):
        generate_city(0, 0.0, *ORIGIN)
    with pytest.raises(ValueError):
        generate_city(0, 300.0, 95.0, 8.0)
    with pytest.raises(TypeError):
        generate_city(0, 300.0, *ORIGIN, style=3)


def test_random_palettes_are_seeded_and_plausible():
    from unifygeo_ros.sim._palette import PALETTES, palette_for, random_palette

    a, b = palette_for("random:7"), palette_for("random:8")
    assert a == random_palette(7) and a != b                                # the seed decides, and only it
    named = {c for p in PALETTES.values() for c in (*p.facades, *p.trees, *p.grass)}
    assert named.isdisjoint({*a.facades, *a.trees, *a.grass})               # drawn apart from the presets
    assert "tiles" in a.roofs and sum(a.roof_kind_weights.values()) == pytest.approx(1.0)
    for p in (a, b):                                                         # greens are green, asphalt grey
        assert all(g > r and g > bl for r, g, bl in (*p.trees, *p.grass))
        assert max(p.asphalt) - min(p.asphalt) < 25 and 55 < p.asphalt[0] < 100
    for bad in ("random:", "random:x", "random:-1", "sepia"):
        with pytest.raises(ValueError, match="random:SEED"):
            palette_for(bad)
    with pytest.raises(ValueError, match="unknown palette 'sepia'"):
        CityStyle(palette="sepia")


def test_cli_sim_city_with_a_random_palette(tmp_path, capsys):
    out = tmp_path / "c"
    rc = main(["sim", "city", "--seed", "4", "--size-m", "120", "--origin", "47.37,8.54", "--style", "suburb",
               "--palette", "random:5", "--mpp", "1.0", "--out", str(out), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["style"] == "suburb" and res["palette"] == "random:5"
    city = City.load(out)                                                    # the palette name round-trips
    assert city.style.palette == "random:5"
    assert city.style.building_width_m == CityStyle.preset("suburb").building_width_m   # the geometry is the preset's
    plain = generate_city(4, 120.0, 47.37, 8.54, "suburb")
    assert {b.facade_colour for b in city.buildings}.isdisjoint({b.facade_colour for b in plain.buildings})
    ortho = render.render_ortho(city, (60.0, 60.0), 40, 1.0)
    assert ortho.shape == (40, 40, 3) and ortho.std() > 5
    rc = main(["sim", "city", "--origin", "47,8", "--palette", "random:x", "--out", str(tmp_path / "x"), "--json"])
    assert rc == 2 and "random:SEED" in json.loads(capsys.readouterr().out)["error"]
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_sim_city_writes_city_and_geotiff(tmp_path, capsys):
    import rasterio

    out = tmp_path / "c"
    rc = main(["sim", "city", "--seed", "4", "--size-m", "150", "--origin", "47.37,8.54", "--style", "suburb",
               "--mpp", "0.5", "--out", str(out), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["crs"] == "EPSG:32632" and res["counts"]["buildings"] > 0 and res["mpp"] == 0.5
    city = City.load(out)
    assert city.style.name == "suburb" and city.seed == 4
    with rasterio.open(out / "orthophoto.tif") as ds:
        assert ds.crs.to_epsg() == 32632
        assert ds.count == 3 and ds.dtypes == ("uint8", "uint8", "uint8")
        assert (ds.width, ds.height) == (300, 300)
        t = ds.transform
        assert t.a == 0.5 and t.e == -0.5 and t.b == 0 and t.d == 0
        assert t.c == pytest.approx(city.frame.origin_e) and t.f == pytest.approx(city.frame.origin_n + 150.0)
        img = ds.read().transpose(1, 2, 0)
    # the GeoTIFF is the orthophoto: compare a window with a direct north-up render
    tile = render.render_ortho(city, (37.5, 112.5), 50, 0.5)
    assert np.abs(img[50:100, 50:100].astype(int) - tile.astype(int)).max() <= 1


@pytest.mark.parametrize("args, message", [
    (["--origin", "north"], "LAT,LON"),
    (["--origin", "95,8"], "latitude"),
    (["--origin", "47,8", "--size-m", "0"], "positive"),
    (["--origin", "47,8", "--style", "atlantis"], "downtown"),
])
def test_cli_sim_city_rejects_bad_input(tmp_path, capsys, args, message):
    rc = main(["sim", "city", "--out", str(tmp_path / "x"), "--json", *args])
    assert rc == 2
    err = json.loads(capsys.readouterr().out)["error"]
    assert message in err
    assert not (tmp_path / "x").exists()


def test_cli_sim_preview_writes_png(tmp_path, capsys):
    import cv2

    city = generate_city(8, 200.0, *ORIGIN, "downtown")
    city.save(tmp_path / "city")
    out = tmp_path / "p.png"
    rc = main(["sim", "preview", "--city", str(tmp_path / "city"), "--out", str(out), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    img = cv2.imread(str(out))
    assert img is not None and [img.shape[1], img.shape[0]] == res["size_px"]
    assert img.std() > 20
    assert main(["sim", "preview", "--city", str(tmp_path / "nothing"), "--json"]) == 2


def test_random_sun_is_seeded_and_within_its_ranges():
    from unifygeo_ros.sim.world import RANDOM_SUN_ELEVATION_DEG, random_sun

    suns = [random_sun(s) for s in range(200)]
    assert random_sun(7) == random_sun(7) and random_sun(7) != random_sun(8)
    az = np.array([a for a, _ in suns])
    el = np.array([e for _, e in suns])
    assert az.min() >= 0.0 and az.max() < 360.0 and np.ptp(az) > 300.0      # the whole circle
    lo, hi = RANDOM_SUN_ELEVATION_DEG
    assert el.min() >= lo and el.max() <= hi and np.ptp(el) > 0.8 * (hi - lo)
    with pytest.raises(ValueError, match="non-negative"):
        random_sun(-1)


def test_cli_sim_city_with_a_given_or_random_sun(tmp_path, capsys):
    from unifygeo_ros.sim.world import random_sun

    out = tmp_path / "c"
    rc = main(["sim", "city", "--seed", "4", "--size-m", "120", "--origin", "47.37,8.54", "--style", "suburb",
               "--sun=-60,25", "--mpp", "1.0", "--out", str(out), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["sun"] == {"azimuth_deg": 300.0, "elevation_deg": 25.0}          # -60 deg is bearing 300
    city = City.load(out)                                                       # the sun round-trips
    assert (city.style.sun_azimuth_deg, city.style.sun_elevation_deg) == (300.0, 25.0)
    plain = generate_city(4, 120.0, 47.37, 8.54, "suburb")
    assert len(city.buildings) == len(plain.buildings)                          # the geometry does not move
    assert [b.height for b in city.buildings] == [b.height for b in plain.buildings]
    # a low western sun casts longer shadows than the preset's (40 deg from the south-south-west):
    # the orthophoto is darker
    a = render.render_ortho(city, (60.0, 60.0), 80, 1.0).astype(float).mean()
    b = render.render_ortho(plain, (60.0, 60.0), 80, 1.0).astype(float).mean()
    assert a < b

    rc = main(["sim", "city", "--seed", "4", "--size-m", "120", "--origin", "47.37,8.54",
               "--sun", "random:3", "--mpp", "1.0", "--out", str(tmp_path / "r"), "--json"])
    assert rc == 0
    az, el = random_sun(3)
    assert json.loads(capsys.readouterr().out)["sun"] == {"azimuth_deg": az, "elevation_deg": el}
    for bad, expected in (("random:x", "random:SEED"), ("90", "AZIMUTH,ELEVATION"), ("90,5", "[10, 85]")):
        rc = main(["sim", "city", "--origin", "47,8", "--sun", bad, "--out", str(tmp_path / "x"), "--json"])
        assert rc == 2 and expected in json.loads(capsys.readouterr().out)["error"]
        assert not (tmp_path / "x").exists()
