"""The public API: every name a user plans or runs with resolves to what it says, whatever was imported first."""

import importlib
import pkgutil
import subprocess
import sys
import types

import partition
import runtime


def test_public_names_are_never_shadowed_by_submodules():
    for pkg in (partition, runtime):
        for info in pkgutil.iter_modules(pkg.__path__):  # import every submodule first: the trap of lazy names
            if not info.name.startswith("cli"):
                importlib.import_module(f"{pkg.__name__}.{info.name}")
        for name in pkg.__all__:
            value = getattr(pkg, name)
            assert not isinstance(value, types.ModuleType), f"{pkg.__name__}.{name} is a module, not the public object"
    from partition import capture, evaluate
    from partition import partition as solve

    assert callable(capture) and callable(evaluate) and callable(solve)


def test_importing_the_packages_loads_no_torch_or_ray():
    code = (
        "import sys, partition, runtime, partition.errors, runtime.errors; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_docstring_examples_of_the_user_facing_modules():
    import doctest

    import examples.smart_city.sumocfg
    import partition.baseline_plans
    import partition.cost
    import partition.extras
    import partition.inputs
    import partition.quota
    import partition.timing
    import partition.units
    import runtime.calibrate
    import runtime.metrics
    import runtime.nodecpu
    import runtime.report
    import runtime.stagetimes

    modules = (partition.inputs, partition.extras, partition.units, partition.cost, partition.timing, runtime.report, runtime)
    modules += (runtime.nodecpu, partition.quota, partition.baseline_plans, runtime.calibrate, runtime.metrics, runtime.stagetimes)
    for module in (*modules, examples.smart_city.sumocfg):
        assert doctest.testmod(module).failed == 0, module.__name__
