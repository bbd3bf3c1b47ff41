"""README's generated parts stay in sync with the code."""
import re

from vode_ros.config import parameter_table_markdown


def test_readme_parameter_table_matches_schema(repo_root):
    text = (repo_root / "README.md").read_text()
    block = re.search(r"<!-- parameters:begin[^\n]*-->\n(.*?)<!-- parameters:end -->", text, re.S)
    assert block, "README lacks the generated parameter table markers"
    assert block.group(1) == parameter_table_markdown(), \
        "README's parameter table is stale: regenerate it with `vode config --markdown`"
