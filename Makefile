# Two set-up commands: `make demo` (the main job) and `make test`. Each installs what it needs into .venv.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: install fonts demo test bench clean

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

clean:
	rm -rf $(VENV) demo_out .pytest_cache
