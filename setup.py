from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="dynamicblocks",
    version="0.1.0",
    description="Residual blocks read as discretized ODEs: Runge-Kutta dynamic blocks for PyTorch",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["dynamicblocks", "dynamicblocks.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.1", "numpy"],
    extras_require={
        "test": [
            "pytest>=7",
            "torchdiffeq>=0.2.3",
            "ruff",
            "matplotlib",
            "tqdm",
            "pyyaml",
            "jsonschema",
        ],
        "examples": ["tqdm", "matplotlib"],
        "docs": ["sphinx>=7", "furo", "myst-parser>=3", "matplotlib", "tqdm"],
        "torchvision": ["torchvision"],
    },
    classifiers=[
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
