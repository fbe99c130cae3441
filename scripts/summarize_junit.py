"""Add up the JUnit XML files of several pytest runs and print one closing line, after the reasons
for the skipped tests (each reason once, with how many tests it skipped and which)."""
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
skips: dict[str, list[str]] = defaultdict(list)
for path in sys.argv[1:]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            skipped = case.find("skipped")
            if skipped is not None:
                reason = (skipped.get("message") or skipped.text or "no reason given").strip()
                skips[reason].append(f"{case.get('classname', '')}.{case.get('name', '')}".lstrip("."))
for reason, cases in sorted(skips.items(), key=lambda item: -len(item[1])):
    shown = ", ".join(cases[:3]) + (f" and {len(cases) - 3} more" if len(cases) > 3 else "")
    print(f"skipped {len(cases)}: {reason} ({shown})")
failed = totals["failures"] + totals["errors"]
passed = totals["tests"] - failed - totals["skipped"]
print(f"total: {passed} passed, {failed} failed, {totals['skipped']} skipped")
sys.exit(0 if failed == 0 and passed > 0 else 1)
