"""Covariance scale factors per model hash, written by ``unifygeo calibrate --write``.

Each entry says how and on what it was measured (held-out synthetic cities, never the
training seeds 11-16, the validation seed 21 nor the demo's 2026). See :mod:`.calibration`.
"""

CALIBRATIONS: dict[str, dict] = {'62b8ff4444a2f52438c7cd3812b838163a5c497563784a9e8cd2aca41443b162': {'c_pos': 2.029952209676141,
                                                                      'c_yaw': 0.6515273426474139,
                                                                      'coverage_unscaled': 0.8791666666666667,
                                                                      'date': '2026-12-03',
                                                                      'measured_on': {'failed': 0,
                                                                                      'modes': ['panorama, '
                                                                                                'known '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, known '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading, '
                                                                                                'GNSS prior'],
                                                                                      'records': 1200,
                                                                                      'seeds': [101,
                                                                                                102,
                                                                                                103,
                                                                                                104],
                                                                                      'size_m': 400.0,
                                                                                      'styles': ['default',
                                                                                                 'downtown',
                                                                                                 'oldtown',
                                                                                                 'suburb'],
                                                                                      'views_per_city_and_mode': 60},
                                                                      'pinhole': {'c_pos': 16.066356547462,
                                                                                  'c_yaw': 1.3741152663626062,
                                                                                  'coverage_unscaled': 0.4125,
                                                                                  'yaw_coverage_unscaled': 0.8791666666666667},
                                                                      'yaw_coverage_unscaled': 0.9680555555555556},
 '69dd037646e1fa87a534d2aef4cabe127b2f4559106f3a333711d41743f4b19f': {'c_pos': 1.941524673043946,
                                                                      'c_yaw': 0.6777773574702569,
                                                                      'coverage_unscaled': 0.8958333333333334,
                                                                      'date': '2026-12-03',
                                                                      'measured_on': {'failed': 0,
                                                                                      'modes': ['panorama, '
                                                                                                'known '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, known '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading, '
                                                                                                'GNSS prior'],
                                                                                      'records': 1200,
                                                                                      'seeds': [101,
                                                                                                102,
                                                                                                103,
                                                                                                104],
                                                                                      'size_m': 400.0,
                                                                                      'styles': ['default',
                                                                                                 'downtown',
                                                                                                 'oldtown',
                                                                                                 'suburb'],
                                                                                      'views_per_city_and_mode': 60},
                                                                      'pinhole': {'c_pos': 18.288974007017746,
                                                                                  'c_yaw': 1.2556120089353147,
                                                                                  'coverage_unscaled': 0.31875,
                                                                                  'yaw_coverage_unscaled': 0.9145833333333333},
                                                                      'yaw_coverage_unscaled': 0.975},
 '6f8d38dda1f1f1868f4358122c83e2c6ec60405e4f77d7e7f2fe03e0d0d29307': {'c_pos': 2.978957736252782,
                                                                      'c_yaw': 1.0245442408302543,
                                                                      'coverage_unscaled': 0.8277777777777777,
                                                                      'date': '2026-11-22',
                                                                      'measured_on': {'failed': 0,
                                                                                      'modes': ['panorama, '
                                                                                                'known '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, known '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading, '
                                                                                                'GNSS prior'],
                                                                                      'records': 1200,
                                                                                      'seeds': [101,
                                                                                                102,
                                                                                                103,
                                                                                                104],
                                                                                      'size_m': 400.0,
                                                                                      'styles': ['default',
                                                                                                 'downtown',
                                                                                                 'oldtown',
                                                                                                 'suburb'],
                                                                                      'views_per_city_and_mode': 60},
                                                                      'pinhole': {'c_pos': 8.73060106886197,
                                                                                  'c_yaw': 1.0918357739023359,
                                                                                  'coverage_unscaled': 0.34375,
                                                                                  'yaw_coverage_unscaled': 0.93125},
                                                                      'yaw_coverage_unscaled': 0.9472222222222222},
 '77fdda4b27e9e57a26cfd2e89a44baa47f80ace657014a90a3372a7a7524fe56': {'c_pos': 1.5213715064196904,
                                                                      'c_yaw': 0.5383479030247956,
                                                                      'coverage_unscaled': 0.9208333333333333,
                                                                      'date': '2026-12-05',
                                                                      'measured_on': {'failed': 0,
                                                                                      'modes': ['panorama, '
                                                                                                'known '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, known '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading, '
                                                                                                'GNSS prior'],
                                                                                      'records': 1200,
                                                                                      'seeds': [101,
                                                                                                102,
                                                                                                103,
                                                                                                104],
                                                                                      'size_m': 400.0,
                                                                                      'styles': ['default',
                                                                                                 'downtown',
                                                                                                 'oldtown',
                                                                                                 'suburb'],
                                                                                      'views_per_city_and_mode': 60},
                                                                      'pinhole': {'c_pos': 17.223955460905625,
                                                                                  'c_yaw': 1.1282223608007953,
                                                                                  'coverage_unscaled': 0.42916666666666664,
                                                                                  'yaw_coverage_unscaled': 0.9104166666666667},
                                                                      'yaw_coverage_unscaled': 0.9833333333333333},
 '97ae2c82679290427211c0956d52ebd9faf185fac1682137d19101e6cd75ae01': {'c_pos': 2.515192048652876,
                                                                      'c_yaw': 0.7730762341763586,
                                                                      'coverage_unscaled': 0.8611111111111112,
                                                                      'date': '2026-12-03',
                                                                      'measured_on': {'failed': 0,
                                                                                      'modes': ['panorama, '
                                                                                                'known '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, known '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading, '
                                                                                                'GNSS prior'],
                                                                                      'records': 1200,
                                                                                      'seeds': [101,
                                                                                                102,
                                                                                                103,
                                                                                                104],
                                                                                      'size_m': 400.0,
                                                                                      'styles': ['default',
                                                                                                 'downtown',
                                                                                                 'oldtown',
                                                                                                 'suburb'],
                                                                                      'views_per_city_and_mode': 60},
                                                                      'pinhole': {'c_pos': 9.767683176208973,
                                                                                  'c_yaw': 1.0975925986689319,
                                                                                  'coverage_unscaled': 0.43333333333333335,
                                                                                  'yaw_coverage_unscaled': 0.925},
                                                                      'yaw_coverage_unscaled': 0.9736111111111111},
 'd81731d7a516101e983d7a57b2574bdea52195d40ff55bd2e124fa1f0eaf749b': {'c_pos': 5.826167265039994,
                                                                      'c_yaw': 1.261781120768384,
                                                                      'coverage_unscaled': 0.6225,
                                                                      'date': '2026-11-22',
                                                                      'measured_on': {'failed': 0,
                                                                                      'modes': ['panorama, '
                                                                                                'known '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, known '
                                                                                                'heading',
                                                                                                'pinhole 90 '
                                                                                                'deg, '
                                                                                                'unknown '
                                                                                                'heading',
                                                                                                'panorama, '
                                                                                                'unknown '
                                                                                                'heading, '
                                                                                                'GNSS prior'],
                                                                                      'records': 1200,
                                                                                      'seeds': [101,
                                                                                                102,
                                                                                                103,
                                                                                                104],
                                                                                      'size_m': 400.0,
                                                                                      'styles': ['default',
                                                                                                 'downtown',
                                                                                                 'oldtown',
                                                                                                 'suburb'],
                                                                                      'views_per_city_and_mode': 60},
                                                                      'yaw_coverage_unscaled': 0.9041666666666667}}
