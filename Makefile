# The two commands of README.md. Everything they need is installed by scripts/setup.sh.
.PHONY: demo test benchmarks

demo:   ## run the main job on the embedded default
	scripts/demo.sh

test:   ## run the whole test suite (what CI runs)
	scripts/test.sh

benchmarks:
	scripts/setup.sh --tools && .venv/bin/python -m benchmarks
