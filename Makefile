# Two set-up commands: `make demo` (the main job) and `make test`. Each installs what it needs into .venv.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: install fonts demo test test-runtime bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[train,backtest,analysis,ray,dev]'
	touch $(STAMP)

install: $(STAMP)

# a CJK font so the report's plots render Chinese (the report still works without one)
fonts:
	-@fc-list :lang=zh 2>/dev/null | grep -q . || (apt-get update -qq && apt-get install -y -qq fonts-noto-cjk >/dev/null && rm -rf ~/.cache/matplotlib) || echo "no CJK font installed: plots fall back to the default font"

demo: $(STAMP) fonts
	$(VENV)/bin/gptquant demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

# the torch-free install: only the runtime dependencies (no torch, transformers, onnx) run the runtime, panel and
# analysis tests on bundles prebuilt by the full install; a skip there is a failure
RT_VENV     ?= .venv-runtime
RT_FIXTURES  = $(RT_VENV)/fixtures
RT_TESTS     = tests/test_runtime.py tests/test_runtime_cli.py tests/test_bundle_tools.py \
               tests/test_streaming.py tests/test_engines.py tests/test_news.py tests/test_cache.py tests/test_panel.py \
               tests/test_panel_cli.py tests/test_analysis.py tests/test_analysis_cli.py tests/test_columns.py

test-runtime: $(STAMP)
	$(PYTHON) -m venv $(RT_VENV)
	$(RT_VENV)/bin/python -m pip install -q -e '.[analysis,dev]'
	$(RT_VENV)/bin/python -c "import importlib.util as u, sys; bad = [m for m in ('torch', 'transformers', 'onnx') if u.find_spec(m)]; sys.exit(f'not torch-free: {bad}' if bad else 0)"
	rm -rf $(RT_FIXTURES) && $(PY) tests/build_runtime_fixtures.py $(RT_FIXTURES)
	GPTQUANT_TEST_FIXTURES=$(RT_FIXTURES) GPTQUANT_NO_SKIP=1 $(RT_VENV)/bin/python -m pytest -q -p no:cacheprovider $(RT_TESTS)

clean:
	rm -rf $(VENV) $(RT_VENV) demo_out .pytest_cache
