"""Native extensions only; everything else lives in pyproject.toml."""

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

COMPILE_ARGS = ["-O3"]
NUMPY_MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]

extensions = [
    Extension(
        f"engine._native.{name}",
        [f"ext/{name}.pyx"],
        include_dirs=[numpy.get_include(), "ext"],
        define_macros=NUMPY_MACROS,
        extra_compile_args=COMPILE_ARGS,
    )
    for name in ("tiles", "delta", "motion")
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["ext"],
        compiler_directives={"language_level": "3"},
    )
)
