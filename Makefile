# make test : create .venv, install everything (pinned), run the whole test suite
# make demo : install, generate the toy data, train + evaluate a ConvNeXt
#             Mask R-CNN and UperNet on CPU, draw predictions
# make downstream : also install mmpose and mmpretrain (tests/test_downstream.py)
#             without changing the default stack (requirements/downstream.txt)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.convnext_backbone-installed

.PHONY: install test demo downstream clean

$(STAMP): tools/install.sh requirements/runtime.txt requirements/constraints.txt requirements/tests.txt setup.py
	VENV=$(abspath $(VENV)) bash tools/install.sh
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q

demo: $(STAMP)
	$(PY) tools/demo.py

# --no-deps: pip never touches torch, numpy, mmcv or mmengine; Cython first,
# to build xtcocotools against the installed numpy.
downstream: $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q --no-deps 'cython>=3,<4'
	$(PY) -m pip install --disable-pip-version-check -q --no-deps \
		--no-build-isolation -r requirements/downstream.txt
	$(PY) -c "import mmpose.models; print('mmpose', mmpose.__version__, 'imports')"

clean:
	rm -rf $(VENV) build *.egg-info work_dirs/toy
