# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
BROKER ?= tansu
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench chaos lint lint-code lint-format install migrate clean

$(STAMP): requirements.txt requirements-dev.txt
	@echo "installing the Python packages into $(VENV) (the first time: a minute or two)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

# BROKER=tansu (default, nothing to install) or BROKER=kafka (Apache Kafka, Java + Maven);
# RELAY=poll (default) or RELAY=cdc (Debezium on Kafka Connect; BROKER=kafka, PostgreSQL)
run: $(STAMP)
	BROKER=$(BROKER) exec $(PY) scripts/devrun.py

lint: lint-code lint-format

lint-code: $(STAMP)
	$(VENV)/bin/ruff check .

lint-format: $(STAMP)
	$(VENV)/bin/ruff format --check .

test: $(STAMP)
	$(PY) scripts/test.py $(ARGS)

bench: $(STAMP)
	$(PY) scripts/bench.py

# DURATION= seconds (default 300), SEED= for a reproducible fault schedule,
# BROKER=kafka (default) or tansu; on PostgreSQL (CHAOS_DATABASE_URL)
chaos: $(STAMP)
	$(PY) -m devtools.chaos

migrate: $(STAMP)
	$(PY) manage.py migrate

clean:
	rm -rf $(VENV) var
