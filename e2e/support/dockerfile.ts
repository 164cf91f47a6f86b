/**
 * A small Dockerfile reader for the tests that keep Dockerfile.kas and Dockerfile.agentk honest
 * without a Docker engine: instructions (comments dropped, line continuations joined), stages, and
 * the arguments of COPY, RUN, ENTRYPOINT, CMD, USER and WORKDIR.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

export interface Instruction {
  keyword: string;
  /** The rest of the instruction, continuations joined with a space. */
  rest: string;
  line: number;
}

export interface Copy {
  from: string | null;
  sources: string[];
  destination: string;
  line: number;
}

export interface Stage {
  name: string | null;
  image: string;
  index: number;
  workdir: string;
  copies: Copy[];
  runs: string[];
  /** COPY and RUN instructions in file order. */
  steps: Array<{ copy: Copy } | { run: string }>;
  user: string | null;
  entrypoint: string[] | null;
  cmd: string[] | null;
  env: Record<string, string>;
}

export function parseInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  let current: Instruction | null = null;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const trimmed = raw.trim();
    if (trimmed.startsWith('#')) continue;
    if (current === null) {
      if (trimmed === '') continue;
      const m = /^(\S+)\s*(.*)$/.exec(trimmed)!;
      current = { keyword: m[1]!.toUpperCase(), rest: m[2]!, line: i + 1 };
    } else {
      current.rest += ` ${trimmed}`;
    }
    if (current.rest.endsWith('\\')) {
      current.rest = current.rest.slice(0, -1).trimEnd();
    } else {
      current.rest = current.rest.replace(/\s+/g, ' ').trim();
      out.push(current);
      current = null;
    }
  }
  if (current) throw new Error(`Dockerfile ends inside a continued instruction (line ${current.line})`);
  return out;
}

function jsonOrShell(rest: string): string[] {
  if (rest.startsWith('[')) return JSON.parse(rest) as string[];
  return ['/bin/sh', '-c', rest];
}

export function parseDockerfile(file: string): Stage[] {
  const stages: Stage[] = [];
  for (const ins of parseInstructions(readFileSync(file, 'utf8'))) {
    if (ins.keyword === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.rest);
      if (!m) throw new Error(`${file}:${ins.line}: cannot read FROM ${ins.rest}`);
      stages.push({ name: m[2] ?? null, image: m[1]!, index: stages.length, workdir: '/', copies: [], runs: [], steps: [], user: null, entrypoint: null, cmd: null, env: {} });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) {
      if (ins.keyword === 'ARG') continue;
      throw new Error(`${file}:${ins.line}: ${ins.keyword} before the first FROM`);
    }
    switch (ins.keyword) {
      case 'WORKDIR':
        stage.workdir = path.posix.resolve(stage.workdir, ins.rest);
        break;
      case 'COPY': {
        const words = ins.rest.split(' ');
        let from: string | null = null;
        while (words[0]?.startsWith('--')) {
          const flag = words.shift()!;
          if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
        }
        if (words.length < 2) throw new Error(`${file}:${ins.line}: COPY needs a source and a destination`);
        const copy = { from, sources: words.slice(0, -1), destination: words.at(-1)!, line: ins.line };
        stage.copies.push(copy);
        stage.steps.push({ copy });
        break;
      }
      case 'RUN':
        stage.runs.push(ins.rest);
        stage.steps.push({ run: ins.rest });
        break;
      case 'USER':
        stage.user = ins.rest;
        break;
      case 'ENTRYPOINT':
        stage.entrypoint = jsonOrShell(ins.rest);
        break;
      case 'CMD':
        stage.cmd = jsonOrShell(ins.rest);
        break;
      case 'ENV': {
        const m = /^(\S+?)(?:=|\s+)(.*)$/.exec(ins.rest);
        if (m) stage.env[m[1]!] = m[2]!;
        break;
      }
      default:
        break;
    }
  }
  return stages;
}

/** A COPY destination resolved against the stage's WORKDIR. */
export function absoluteDestination(stage: Stage, copy: Copy): string {
  return path.posix.resolve(stage.workdir, copy.destination);
}
