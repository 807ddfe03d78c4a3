# make test : create .venv, install everything (pinned), run the whole test suite
# make demo : install, generate the toy data, train + evaluate a ConvNeXt
#             Mask R-CNN and UperNet on CPU, draw predictions
# STACK=onedl : the same on the maintained onedl-* forks, in .venv-onedl
#             (`make test STACK=onedl`; 6.5 GB on disk, its torch comes with the
#             CUDA libraries); the default is STACK=upstream (.venv, 1.7 GB)
# make downstream : check that the downstream projects import (the install
#             puts mmpose in .venv; onedl-mmpretrain and timm in .venv-onedl)
STACK ?= upstream
ifeq ($(STACK),upstream)
VENV ?= .venv
STACK_REQS := requirements/runtime.txt requirements/constraints.txt requirements/downstream.txt
else ifeq ($(STACK),onedl)
VENV ?= .venv-onedl
STACK_REQS := requirements/runtime-onedl.txt requirements/constraints-onedl.txt
else
$(error unknown STACK=$(STACK); choose upstream (the default) or onedl)
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.convnext_backbone-installed

.PHONY: install test demo downstream deploy clean

$(STAMP): tools/install.sh $(STACK_REQS) requirements/tests.txt requirements/deploy.txt setup.py
	STACK=$(STACK) VENV=$(abspath $(VENV)) bash tools/install.sh
	touch $@

install: $(STAMP)

# The deploy tools' packages (onnx, onnxruntime, ...) are part of the install.
deploy: $(STAMP)
	$(PY) -c "import onnx, onnxruntime; print('onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__)"

test: $(STAMP)
	$(PY) -m pytest tests -q -rs --durations=15

demo: $(STAMP)
	$(PY) tools/demo.py

downstream: $(STAMP)
	$(PY) -m pytest tests/test_downstream.py -q -rs

clean:
	rm -rf .venv .venv-onedl build *.egg-info work_dirs/toy
