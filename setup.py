"""unifygeo_ros for pip (``pip install -e .``: the venv of the README).

In a ROS 2 workspace colcon builds the package from CMakeLists.txt (messages and Python
package together); this file is not used there."""

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
    package_data={PACKAGE: ["weights/*.pt", "weights/*.md", "weights/*.json"]},
    data_files=[
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
        "pyyaml>=5.4",
        "threadpoolctl>=3.1",       # one OpenBLAS thread in the localizer (localizer.single_thread_blas)
    ],
    extras_require={
        # mypy type-checks the TensorRT backend in the tests; tensorrt-stubs cannot be listed
        # here (it requires the tensorrt wheel, which installs only from NVIDIA's index):
        # install it with `pip install --no-deps tensorrt-stubs==10.13.0.35.1`.
        "test": ["pytest>=7", "mypy>=1.8"],
        # A real rclpy for the node's tests on a machine without a ROS install: the ROS 2
        # Jazzy wheels from PyPI (x86_64, CPython 3.10-3.13; not for a Jetson, which uses
        # its ROS install). `make test` installs them.
        "ros-test": [
            "ros-jazzy-rclpy[fastrtps]==7.1.6",
            "ros-jazzy-sensor-msgs==5.3.6",
            "ros-jazzy-geometry-msgs==5.3.6",
            "ros-jazzy-nav-msgs==5.3.6",
            "ros-jazzy-diagnostic-msgs==5.3.6",
        ],
    },
    entry_points={
        "console_scripts": [
            "unifygeo = unifygeo_ros.cli:main",
            "localize_node = unifygeo_ros.ros.node:main",
        ],
    },
    zip_safe=False,
)
