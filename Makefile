# vode_ros developer targets. Everything runs from the venv at .venv (Python 3.11 + ROS 2 wheels).
#
#   make venv    create/update .venv (seconds when nothing changed)
#   make test    the whole pytest suite, in the venv, with the ROS environment it needs
#   make test ROS_DISTRO=jazzy   the tests that need a ROS graph, in .venv-jazzy (ROS 2 Jazzy)
#   make test-core  the tests that need no ROS graph and are quick (under a minute)
#   make lint    ruff over the sources, mypy over the core modules
#   make demo    vode demo
#   make lock    re-pin every transitive package into requirements/lock.txt
#   make colcon  build the package with colcon into build/colcon (as a ROS user would)
#   make clean   remove build outputs (not the venv); make distclean also removes the venv

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The ROS 2 release: Kilted (.venv, the whole suite) unless ROS_DISTRO=<release> is given on make's
# command line; then .venv-<release> from requirements/<release>.txt and its lock, and `make test`
# runs the tests that need a ROS graph (marker ros, the colcon build left out). A ROS_DISTRO in the
# environment (as a sourced ROS install sets it) does not choose the venv.
ifeq ($(origin ROS_DISTRO),command line)
DISTRO := $(ROS_DISTRO)
else
DISTRO := kilted
endif
ifeq ($(DISTRO),kilted)
VENV         := .venv
REQUIREMENTS := requirements.txt
LOCK         := requirements/lock.txt
TEST_SELECT  :=
else
VENV         := .venv-$(DISTRO)
REQUIREMENTS := requirements/$(DISTRO).txt
LOCK         := requirements/$(DISTRO)-lock.txt
TEST_SELECT  := -m "ros and not slow"
endif
VPY    := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
STAMP  := $(VENV)/.stamp

# What the venv is built from: a change to any of these re-runs the (incremental) install.
VENV_INPUTS := $(REQUIREMENTS) $(LOCK) msg/TFMessage.msg tools/gen_tf2_msgs.sh \
               tools/venv_setup.py setup.py setup.cfg package.xml resource/vode_ros Makefile
# Linked into .venv/share/vode_ros by tools/venv_setup.py: a new or removed file re-links
# (their names count for the stamp, not their contents: links follow edits).
DATA_FILES  := $(sort $(wildcard launch/*.py launch/*.xml launch/*.yaml config/*.yaml config/*.yml \
                 config/*.rviz config/*.xml models/*.onnx models/*.npz models/README.md))

# The environment a ROS process from this venv needs. LD_LIBRARY_PATH is set by the ROS wheels'
# own start-up hook (ros_wheels_bootstrapper.pth), AMENT_PREFIX_PATH by ours (vode_ros_env.pth);
# exporting them here as well keeps non-python children (colcon, shell scripts) in the same world.
VENV_ABS := $(CURDIR)/$(VENV)
export AMENT_PREFIX_PATH := $(VENV_ABS)$(if $(AMENT_PREFIX_PATH),:$(AMENT_PREFIX_PATH))
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_shm.xml
ifneq ($(DISTRO),kilted)
# Fast DDS 2.x (Jazzy) reads the profile from the older variable name only
export FASTRTPS_DEFAULT_PROFILES_FILE ?= $(FASTDDS_DEFAULT_PROFILES_FILE)
endif
export PYTHONUNBUFFERED := 1

PYTEST_ARGS ?= -q
PIP := $(VPY) -m pip install --quiet --disable-pip-version-check
# pip.conf here names local index folders that lack most projects; pip warns once per project.
PIP_NOISE := is ignored: it is neither a file nor a directory

# Lint tools from the venv (pinned in requirements.txt); RUFF=/path/to/ruff to use another.
RUFF ?= $(VENV)/bin/ruff
MYPY ?= $(VENV)/bin/mypy
LINT_PATHS := vode_ros test tools launch setup.py
# The core: plain modules on numpy/OpenCV/ONNX Runtime, type-checked (mypy section of setup.cfg)
MYPY_FILES := $(wildcard $(addprefix vode_ros/,camera.py geometry.py imaging.py inference.py \
                config.py config_tracking.py config_loop_closure.py config_values.py config_files.py \
                errors.py files.py progress.py multiview.py model_file.py \
                message_fields.py))

.PHONY: help venv test test-core lint demo lock colcon clean distclean

help:
	@sed -n '1,11p' Makefile | sed 's/^# \{0,1\}//'

venv:
	@want=$$({ cat $(VENV_INPUTS); printf '%s\n' $(DATA_FILES); } 2>/dev/null | sha256sum | cut -c1-32); \
	if [ -x $(VPY) ] && [ -f $(STAMP) ] && [ "$$(cat $(STAMP))" = "$$want" ]; then \
	  echo "venv: $(VENV) is up to date"; exit 0; fi; \
	if [ -e $(VENV) ] && ! $(VPY) -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then \
	  echo "venv: $(VENV) is broken or not Python 3.11; recreating"; rm -rf $(VENV); fi; \
	if [ ! -e $(VENV) ]; then \
	  "$(PYTHON)" -c 'import sys; assert sys.version_info[:2] == (3, 11), "the ROS wheels need Python 3.11; set PYTHON=python3.11"'; \
	  echo "venv: creating $(VENV) with $(PYTHON)"; "$(PYTHON)" -m venv $(VENV); fi; \
	rm -f $(STAMP); \
	echo "venv: installing pinned requirements ($(REQUIREMENTS), $(LOCK))"; \
	$(PIP) -r $(REQUIREMENTS) 2>&1 | { grep -v "$(PIP_NOISE)" || true; }; \
	tools/gen_tf2_msgs.sh $(VENV); \
	echo "venv: installing vode_ros (editable)"; \
	$(PIP) --no-deps --no-build-isolation -e . 2>&1 | { grep -v "$(PIP_NOISE)" || true; }; \
	$(VPY) tools/venv_setup.py; \
	echo "$$want" > $(STAMP); \
	echo "venv: ready ($(VENV))"

# timeout: a last cap on the whole run (s), for a hang outside any one test's watchdog
test: venv
	timeout -k 30 2700 $(VPY) -m pytest $(PYTEST_ARGS) $(TEST_SELECT) test/

# markers (setup.cfg, given in test/conftest.py): ros = needs a ROS graph or node subprocesses,
# slow = takes more than a few seconds
test-core: venv
	timeout -k 30 600 $(VPY) -m pytest $(PYTEST_ARGS) -m "not ros and not slow" test/

# mypy imports what the core imports from the venv's packages (numpy's and OpenCV's types)
lint: venv
	$(RUFF) check $(LINT_PATHS)
	$(MYPY) --python-executable $(VPY) $(MYPY_FILES)

demo: venv
	$(VENV)/bin/vode demo

lock: venv
	@$(VPY) -m pip freeze --exclude-editable --disable-pip-version-check \
	  | grep -viE '^(vode[-_]ros|tf2[-_]msgs)==' \
	  | { echo "# Every package of $(VENV), pinned (make lock$(if $(TEST_SELECT), ROS_DISTRO=$(DISTRO))). $(REQUIREMENTS) applies it with -c."; cat; } \
	  > $(LOCK)
	@echo "lock: wrote $(LOCK) ($$(grep -vc '^#' $(LOCK)) packages)"

colcon: venv
	$(VENV)/bin/colcon build --base-paths . --build-base build/colcon/build \
	  --install-base build/colcon/install

clean:
	rm -rf build install log *.egg-info .pytest_cache .mypy_cache .ruff_cache

distclean: clean
	rm -rf $(VENV)
