# make test : create .venv, install everything (pinned), run the whole test suite
# make demo : install, generate the toy data, train + evaluate a ConvNeXt
#             Mask R-CNN and UperNet on CPU, draw predictions
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.convnext_backbone-installed

.PHONY: install test demo clean

$(STAMP): tools/install.sh requirements/runtime.txt requirements/tests.txt setup.py
	VENV=$(abspath $(VENV)) bash tools/install.sh
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q

demo: $(STAMP)
	$(PY) tools/demo.py

clean:
	rm -rf $(VENV) build *.egg-info work_dirs/toy
