"""The documentation against the repository: the mistakes that recur.

Fast, no model is built. Checked in README.md, CHANGELOG.md and docs/*.md:

- every relative link (and image) points to a file that exists, and every
  ``#anchor`` to a heading of its page, by GitHub's anchor rules;
- every ``tools/...py`` / ``tools/...sh`` path named exists, and every
  ``make <target>`` in a command or code span is a target of the Makefile;
- no test counts in prose (``512 passed``): ``make test`` prints them;
- the versions of the stack table in docs/stacks.md are the pinned ones
  (requirements/*.txt, tools/install.sh), and so is every full version of
  a pinned package stated anywhere (``torch 2.13.0``);
- the version of ``convnext_backbone/version.py`` (its one place) is the
  newest released section of CHANGELOG.md, CITATION.cff's and setup.py's;
  an ``## [Unreleased]`` section sits above it;
- LICENSE is the Apache-2.0 text that setup.py names, and MANIFEST.in
  ships it in the sdist.
"""
import glob
import os.path as osp
import re
import subprocess
import sys
import unicodedata
from typing import Dict, Iterator, List, Set, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGES = sorted(['README.md', 'CHANGELOG.md'] + [
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'docs', '*.md'))])

FENCE = re.compile(r'^(```|~~~)')
# [text](target) and ![alt](target); target without spaces, optional title.
LINK = re.compile(r'!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?'
                  r'(?:\s+"[^"]*")?\s*\)')
CODE_SPAN = re.compile(r'(`+)(.+?)\1')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
TOOL_PATH = re.compile(r'(?<![\w/.-])(tools/[\w./-]+?\.(?:py|sh))(?![\w/])')
TEST_COUNT = re.compile(r'\b\d+ (?:passed|failed|skipped)\b')


def read(path: str, root: str = REPO) -> str:
    with open(osp.join(root, path), encoding='utf-8') as f:
        return f.read()


def split_code(text: str) -> Tuple[List[str], List[str]]:
    """(prose lines with code spans blanked, code: fenced blocks' lines and
    the inline code spans)."""
    prose, code = [], []
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if fenced or line.startswith('    '):
            code.append(line)
            continue
        code.extend(m.group(2) for m in CODE_SPAN.finditer(line))
        prose.append(CODE_SPAN.sub(' ', line))
    return prose, code


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: markup and punctuation dropped (but
    ``-`` and ``_``), lower case, each space a ``-``."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links
    text = text.replace('`', '')
    text = re.sub(r'<[^>]+>', '', text)  # inline HTML
    text = text.strip().lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in '-_ ' or cat[0] in 'LN' or cat == 'Mn':
            kept.append(ch)
    return ''.join(kept).replace(' ', '-')


def anchors(path: str, root: str = REPO) -> Set[str]:
    """Every anchor of a markdown page, duplicates numbered as GitHub does."""
    seen: Dict[str, int] = {}
    found = set()
    fenced = False
    for line in read(path, root).splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if not match:
            continue
        slug = github_anchor(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f'{slug}-{count}')
    return found


def links(path: str, root: str = REPO) -> Iterator[str]:
    prose, _ = split_code(read(path, root))
    for line in prose:
        for match in LINK.finditer(line):
            yield match.group(1)


def broken_links(page: str, root: str = REPO) -> List[str]:
    """The relative links of ``page`` whose file or anchor is missing."""
    broken = []
    for target in links(page, root):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # http:, mailto:, ...
            continue
        file_part, _, anchor = target.partition('#')
        dest = osp.normpath(osp.join(osp.dirname(page), file_part)) \
            if file_part else page
        if not osp.exists(osp.join(root, dest)):
            broken.append(f'{target}: {dest} does not exist')
            continue
        if anchor and dest.endswith('.md') and \
                anchor not in anchors(dest, root):
            broken.append(f'{target}: no heading #{anchor} in {dest} (has: '
                          f'{", ".join(sorted(anchors(dest, root)))})')
    return broken


@pytest.mark.parametrize('page', PAGES)
def test_relative_links_and_anchors_resolve(page):
    broken = broken_links(page)
    assert not broken, f'{page}:\n  ' + '\n  '.join(broken)


def test_the_link_check_finds_what_recurs(tmp_path):
    """The mistakes seen before: a link from docs/ written as if from the
    root (docs/docs/...), an anchor of a renamed heading; links in code are
    not links."""
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'a.md').write_text(
        '# Page A\n\n## Why `this` (and that)\n\n### Why this and that\n')
    (tmp_path / 'docs' / 'b.md').write_text(
        '[ok](a.md#why-this-and-that) [ok](a.md#why-this-and-that-1) '
        '[ok](#page-b) [web](https://example.com/x.md)\n'
        '[root-relative](docs/a.md) [gone](a.md#old-heading) '
        '`[code](nowhere.md)`\n\n# Page B\n\n```\n[fenced](nowhere.md)\n```\n')
    assert broken_links('docs/b.md', str(tmp_path)) == [
        'docs/a.md: docs/docs/a.md does not exist',
        'a.md#old-heading: no heading #old-heading in docs/a.md (has: '
        'page-a, why-this-and-that, why-this-and-that-1)']


def test_github_anchor_rules():
    assert github_anchor('COCO 2017 (detection / instance segmentation)') \
        == 'coco-2017-detection--instance-segmentation'
    assert github_anchor('`swap_backbone`: ConvNeXt in any model') \
        == 'swap_backbone-convnext-in-any-model'
    assert github_anchor('Checkpoint refused: `Weights only load failed`') \
        == 'checkpoint-refused-weights-only-load-failed'
    assert github_anchor('ConvNeXt V2 (`configs/convnextv2/`)') \
        == 'convnext-v2-configsconvnextv2'


@pytest.mark.parametrize('page', PAGES)
def test_named_tools_exist(page):
    missing = sorted({p for p in TOOL_PATH.findall(read(page))
                      if not osp.exists(osp.join(REPO, p))})
    assert not missing, f'{page} names tools that do not exist: {missing}'


def make_targets() -> Set[str]:
    targets = set()
    for line in read('Makefile').splitlines():
        match = re.match(r'^([A-Za-z][\w.-]*(?:\s+[A-Za-z][\w.-]*)*)\s*:(?!=)',
                         line)
        if match:
            targets.update(match.group(1).split())
    return targets


def named_make_targets(page: str) -> Iterator[str]:
    """Targets of ``make ...`` in code (blocks and spans) of a page:
    variables (``STACK=onedl``) and options skipped."""
    _, code = split_code(read(page))
    for line in code:
        for match in re.finditer(r'(?:^|[\s;&|(])make((?:\s+[^\s;&|)#]+)*)',
                                 line):
            for word in match.group(1).split():
                if '=' in word or word.startswith('-'):
                    continue
                yield word.rstrip(',.:;')
                break


@pytest.mark.parametrize('page', PAGES)
def test_named_make_targets_exist(page):
    targets = make_targets()
    assert {'install', 'test', 'demo'} <= targets, targets
    missing = sorted(set(named_make_targets(page)) - targets)
    assert not missing, (f'{page} names make targets the Makefile does not '
                         f'have: {missing} (it has {sorted(targets)})')


@pytest.mark.parametrize('page', PAGES)
def test_no_test_counts_in_prose(page):
    found = TEST_COUNT.findall(read(page))
    assert not found, (
        f'{page} states test counts {found}: they go stale with every test; '
        '`make test` prints them')


def pins(stack: str) -> Dict[str, str]:
    """Exact versions the installer puts into a stack profile."""
    suffix = '' if stack == 'upstream' else '-onedl'
    found = {}
    for name in (f'runtime{suffix}', f'constraints{suffix}',
                 f'downstream{suffix}'):
        for line in read(f'requirements/{name}.txt').splitlines():
            match = re.match(r'^([A-Za-z][\w.-]*)==([\w.]+)', line)
            if match:
                found[match.group(1).lower()] = match.group(2)
    install = read('tools/install.sh')
    case = re.search(rf'^  {stack}\)\n(.*?);;', install, re.M | re.S)
    assert case, f'no {stack}) case in tools/install.sh'
    for name, value in re.findall(r'(torch|torchvision)==([\w.]+)',
                                  case.group(1)):
        found[name] = value
    dist = re.search(r'MMCV_DIST=(\S+) MMCV_VERSION=(\S+)', case.group(1))
    found[dist.group(1)] = dist.group(2)
    return found


def test_stack_table_versions_are_the_pinned_ones():
    rows = {}
    for line in read('docs/stacks.md').splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 4 and cells[1].startswith('`make test'):
            stack = 'upstream' if cells[0].startswith('upstream') else 'onedl'
            rows[stack] = cells[3]
    assert set(rows) == {'upstream', 'onedl'}, rows
    wrong = []
    for stack, text in rows.items():
        pinned = pins(stack)
        for name, value in re.findall(
                r'([A-Za-z][\w-]*) (\d+\.\d+(?:\.\d+)*)', text):
            if pinned.get(name.lower()) != value:
                wrong.append(f'{stack}: {name} {value} (pinned: '
                             f'{pinned.get(name.lower(), "not pinned")})')
    assert not wrong, 'docs/stacks.md:\n  ' + '\n  '.join(wrong)


# Versions of a pinned package that the docs state on purpose although no
# profile installs them: the environment of the H100 measurement
# (docs/benchmarks.md, docs/stacks.md).
MEASURED_ELSEWHERE = {('torch', '2.11.0'), ('numpy', '2.5.2'),
                      ('timm', '1.0.29')}


@pytest.mark.parametrize('page', PAGES)
def test_stated_versions_of_pinned_packages_are_pinned(page):
    """``torch 2.13.0`` in prose goes stale when the pin moves: every
    full version of a pinned package a page states is one of its pins."""
    pinned: Dict[str, Set[str]] = {}
    for stack in ('upstream', 'onedl'):
        for name, value in pins(stack).items():
            pinned.setdefault(name, set()).add(value)
    stale = sorted({
        f'{name} {value}' for name, value in re.findall(
            r'\b([A-Za-z][\w-]*) (\d+\.\d+\.\d+)\b', read(page))
        if name.lower() in pinned and value not in pinned[name.lower()]
        and (name.lower(), value) not in MEASURED_ELSEWHERE})
    assert not stale, (f'{page} states versions no profile pins: {stale} '
                       '(requirements/*.txt, tools/install.sh)')


def package_version() -> str:
    scope: dict = {}
    exec(read('convnext_backbone/version.py'), scope)
    return scope['__version__']


def test_changelog_has_unreleased_above_the_version():
    text = read('CHANGELOG.md')
    sections = re.findall(r'^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$',
                          text, re.M)
    assert sections, 'CHANGELOG.md has no "## [version] - date" sections'
    assert sections[0][0] == 'Unreleased', (
        'the first section must be ## [Unreleased], where changes of the '
        f'coming release go; found {sections[0][0]}')
    released = [s for s in sections if s[0] != 'Unreleased']
    assert released and all(date for _, date in released), released
    assert released[0][0] == package_version(), (
        f'convnext_backbone/version.py says {package_version()}, the newest '
        f'released section of CHANGELOG.md is {released[0][0]}')


def test_citation_agrees_with_the_version():
    yaml = pytest.importorskip('yaml')
    cff = yaml.safe_load(read('CITATION.cff'))
    assert cff['cff-version'].startswith('1.2')
    assert str(cff['version']) == package_version()
    assert cff['license'] == 'Apache-2.0'
    date = re.search(rf'^## \[{re.escape(package_version())}\] - (\S+)$',
                     read('CHANGELOG.md'), re.M)
    assert date and str(cff['date-released']) == date.group(1)
    titles = ' | '.join(ref['title'] for ref in cff['references'])
    assert 'A ConvNet for the 2020s' in titles, titles
    assert 'ConvNeXt V2' in titles, titles


def test_setup_py_version_and_license():
    proc = subprocess.run(
        [sys.executable, 'setup.py', '--version', '--license'], cwd=REPO,
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.split()
    assert lines[-2:] == [package_version(), 'Apache-2.0'], proc.stdout


def test_license_is_apache_and_shipped():
    text = read('LICENSE')
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text
    assert 'END OF TERMS AND CONDITIONS' in text  # the full text
    manifest = read('MANIFEST.in').split()
    assert 'LICENSE' in manifest, 'MANIFEST.in does not ship LICENSE'
    assert "license='Apache-2.0'" in read('setup.py')
