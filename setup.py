"""unifygeo_ros: pip-installable (``pip install -e .``) and an ament_python ROS 2 package."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "unifygeo_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Cross-view geo-localization (UnifyGeo) against geo-referenced aerial imagery, for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["weights/*.pt", "weights/*.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
    ],
    # torch is pinned by constraints.txt (the CPU wheel); here only a floor, so that a
    # Jetson's own torch build satisfies it.
    install_requires=[
        "numpy>=1.24",
        "torch>=2.1",
        "onnx>=1.15",
        "onnxruntime>=1.17",
        "faiss-cpu>=1.7.4",
        "pyproj>=3.5",
        "rasterio>=1.3",
        "opencv-python-headless>=4.8",
        "rosbags>=0.10",
        "rosbags-image>=0.9",
        "tqdm>=4.60",
    ],
    extras_require={
        "test": ["pytest>=7"],
    },
    entry_points={
        "console_scripts": [
            "unifygeo = unifygeo_ros.cli:main",
        ],
    },
    zip_safe=False,
)
