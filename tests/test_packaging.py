"""The Python versions setup.cfg declares are the ones its requirements allow."""

import configparser
import pathlib
import re
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

SETUP_CFG = pathlib.Path(__file__).resolve().parents[1] / "setup.cfg"


def _options():
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    requirements = [
        Requirement(line.strip())
        for line in config["options"]["install_requires"].splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    classifiers = config["metadata"]["classifiers"]
    return SpecifierSet(config["options"]["python_requires"]), requirements, classifiers


def _minors(specifier):
    return [f"3.{minor}" for minor in range(6, 20) if specifier.contains(f"3.{minor}.0")]


def test_every_declared_python_is_allowed_by_every_installed_requirement():
    python, requirements, _ = _options()
    declared = _minors(python)
    for requirement in requirements:
        requires_python = metadata.metadata(requirement.name).get("Requires-Python")
        if not requires_python:
            continue
        allowed = SpecifierSet(requires_python)
        refused = [v for v in declared if not allowed.contains(f"{v}.0")]
        assert not refused, (
            f"setup.cfg declares Python {', '.join(refused)}, but the installed "
            f"{requirement.name} {metadata.version(requirement.name)} requires {requires_python}"
        )


def test_the_lowest_declared_python_is_as_low_as_the_requirements_allow():
    # Tight, not just safe: one requirement refuses the Python below ours.
    python, requirements, _ = _options()
    below = f"3.{int(_minors(python)[0].split('.')[1]) - 1}.0"
    refusing = [
        r.name
        for r in requirements
        if metadata.metadata(r.name).get("Requires-Python")
        and not SpecifierSet(metadata.metadata(r.name)["Requires-Python"]).contains(below)
    ]
    assert refusing, f"no requirement refuses Python {below}: setup.cfg could declare it"


def test_classifiers_and_readme_name_the_declared_versions():
    python, _, classifiers = _options()
    listed = re.findall(r"Programming Language :: Python :: (3\.\d+)", classifiers)
    assert listed == _minors(python)
    readme = (SETUP_CFG.parent / "README.md").read_text()
    first, last = _minors(python)[0], _minors(python)[-1]
    assert f"Python {first} to {last}" in readme
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in _minors(python)


def test_the_top_level_exports_every_builder_and_preset_of_models():
    import keras_llm

    for name in keras_llm.__all__:
        assert hasattr(keras_llm, name), name
    wanted = {n for n in keras_llm.models.__all__ if n.startswith("build_") or n.endswith("_PRESETS")}
    assert wanted <= set(keras_llm.__all__) and "build_gpt" in wanted and "GPT" not in keras_llm.__all__
