"""Print how many workers a Spark standalone master needs now (farmhand's external metric for
the workers role in spark.toml; see spark_status.wanted_workers for the rule).

    python3 spark_wanted.py http://127.0.0.1:8080/json/
"""

from __future__ import annotations

import sys

from spark_status import master_status, wanted_workers

if __name__ == "__main__":
    print(wanted_workers(master_status(sys.argv[1])))
