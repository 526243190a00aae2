"""Build: the Cython core from ext/ and the gRPC code generated from proto/.

Generated protobuf/gRPC modules land in etf_engine/v1/ (not committed); they are regenerated on
every build so that they can never drift from the .proto files.
"""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).parent.resolve()


def generate_protos() -> None:
    import grpc_tools
    from grpc_tools import protoc  # build requirement, see pyproject.toml

    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    if not protos:
        return
    out = ROOT / "etf_engine" / "v1"
    out.mkdir(exist_ok=True)
    (out / "__init__.py").write_text('"""Generated from proto/etf_engine/v1; do not edit."""\n')
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={ROOT}",
            f"--pyi_out={ROOT}", f"--grpc_python_out={ROOT}", *protos]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + " ".join(protos))


# Generated before setup() runs: every setuptools step (egg_info included) needs etf_engine/v1 to exist.
generate_protos()

extensions = [
    Extension("etf_engine._core", ["ext/etf_engine/_core.pyx"], extra_compile_args=["-O2"]),
    Extension("etf_engine.journal._walsum", ["ext/etf_engine/_walsum.pyx"], extra_compile_args=["-O2"]),
    Extension("etf_engine.journal._sqlite_writer", ["ext/etf_engine/_sqlite_writer.pyx"], libraries=["sqlite3"],
              extra_compile_args=["-O2"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        include_path=["ext"],
        compiler_directives={"boundscheck": False, "wraparound": False, "initializedcheck": False},
    ),
)
