"""The MVT side of the Active Defense benchmark (defense/scan/benches/defense.rs).

usage: mvt_peer.py BUNDLE_DIR DOMAINS_FILE PROCESSES_FILE

Loads every *.stix2 bundle of BUNDLE_DIR with MVT's Indicators class, then checks each line of
DOMAINS_FILE with check_domain and each line of PROCESSES_FILE with check_process, as MVT's
modules do; prints one JSON object with the times (seconds) and match counts.
"""

import glob
import json
import logging
import os
import sys
import time

os.environ.setdefault("MVT_NETWORK_ACCESS_ALLOWED", "False")
logging.disable(logging.CRITICAL)

from mvt.common.indicators import Indicators  # noqa: E402


def main() -> None:
    bundle_dir, domains_file, processes_file = sys.argv[1:4]
    with open(domains_file, encoding="utf-8") as handle:
        domains = handle.read().split("\n")
    with open(processes_file, encoding="utf-8") as handle:
        processes = handle.read().split("\n")
    files = sorted(glob.glob(os.path.join(bundle_dir, "*.stix2")))

    started = time.perf_counter()
    indicators = Indicators(log=logging.getLogger("mvt-peer"))
    indicators.load_indicators_files(files, load_default=False)
    loaded = time.perf_counter()
    domain_matches = sum(1 for d in domains if indicators.check_domain(d))
    matched_domains = time.perf_counter()
    process_matches = sum(1 for p in processes if indicators.check_process(p))
    done = time.perf_counter()

    print(
        json.dumps(
            {
                "load_s": loaded - started,
                "domains_s": matched_domains - loaded,
                "processes_s": done - matched_domains,
                "domain_matches": domain_matches,
                "process_matches": process_matches,
                "indicators": indicators.total_ioc_count,
            }
        )
    )


main()
