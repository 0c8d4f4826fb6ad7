#!/usr/bin/env python3
"""Finds include cycles between tandem's modules.

A module is a folder under src/ (core, io, pipeline, store, ...). Module A
depends on module B when a file in A includes a header of B with a quoted
#include. The layering is only real when these dependencies form no cycle:
a lower module (core) never reaches up into a higher one (serve). The same
check runs between headers too, which catches a cycle inside one folder
that include guards would hide from the compiler.

Prints every module edge with --list. Exits 1 and names each cycle found
(as a path A -> B -> ... -> A) when there is one, else 0.
"""
import os
import re
import sys

INCLUDE = re.compile(r'\s*#\s*include\s+"([^"]+)"')


def edges(root):
    """(module edges, unit edges): dicts from a node to the set it includes,
    and for module edges the files that make each edge."""
    modules, units, why = {}, {}, {}
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            if not name.endswith(('.c', '.h')):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(folder, root)
            unit = os.path.relpath(path, root)
            with open(path, encoding='utf-8') as f:
                for line in f:
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = os.path.normpath(os.path.join(folder, m.group(1)))
                    if not target.startswith(root + os.sep):
                        continue  # include/tandem.h: the public API
                    to_module = os.path.relpath(os.path.dirname(target), root)
                    to_unit = os.path.relpath(target, root)
                    if name.endswith('.h') and to_unit != unit:
                        units.setdefault(unit, set()).add(to_unit)
                    if to_module != module:
                        modules.setdefault(module, set()).add(to_module)
                        why.setdefault((module, to_module), set()).add(path)
    return modules, units, why


def cycles(graph):
    """Every cycle a depth-first search meets, each as a list of nodes."""
    found, state, path = [], {}, []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src')
    root = os.path.normpath(root)
    modules, units, why = edges(root)
    if '--list' in sys.argv:
        for (a, b), files in sorted(why.items()):
            print(f'{a} -> {b}: {" ".join(sorted(os.path.relpath(f, root) for f in files))}')
    bad = 0
    for kind, graph in (('module', modules), ('header', units)):
        for cycle in cycles(graph):
            bad = 1
            print(f'include cycle between {kind}s: {" -> ".join(cycle)}')
            if kind == 'module':
                for a, b in zip(cycle, cycle[1:]):
                    files = sorted(os.path.relpath(f, root) for f in why[(a, b)])
                    print(f'  {a} -> {b} through {", ".join(files)}')
    if not bad:
        print(f'no include cycles ({len(modules)} modules, {len(units)} headers that include others)')
    return bad


if __name__ == '__main__':
    sys.exit(main())
