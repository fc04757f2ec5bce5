"""A real-looking program: a tokenizer, a recursive-descent parser building an
AST of small classes, and a tree-walking evaluator for a tiny expression
language with variables and function calls, run over generated programs.
"""
import os
import random
import re

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
PROGRAMS = max(10, int(5400 * SCALE))

TOKEN_RE = re.compile(r"\s*(?:(\d+)|([A-Za-z_]\w*)|(.))")


class Num:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def eval(self, env):
        return self.value


class Var:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def eval(self, env):
        return env[self.name]


class BinOp:
    __slots__ = ("op", "left", "right")
    OPS = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "%": lambda a, b: a % b if b else 0,
    }

    def __init__(self, op, left, right):
        self.op = op
        self.left = left
        self.right = right

    def eval(self, env):
        return self.OPS[self.op](self.left.eval(env), self.right.eval(env))


class Call:
    __slots__ = ("name", "args")
    FUNCS = {"max": max, "min": min, "abs": abs}

    def __init__(self, name, args):
        self.name = name
        self.args = args

    def eval(self, env):
        return self.FUNCS[self.name](*[a.eval(env) for a in self.args])


def tokenize(text):
    tokens = []
    for num, name, op in TOKEN_RE.findall(text):
        if num:
            tokens.append(("num", int(num)))
        elif name:
            tokens.append(("name", name))
        elif op.strip():
            tokens.append(("op", op))
    tokens.append(("end", None))
    return tokens


class Parser:
    def __init__(self, tokens):
        self.tokens = tokens
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos]

    def take(self):
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, value):
        kind, v = self.take()
        if v != value:
            raise SyntaxError("expected %r, got %r" % (value, v))

    def expr(self):
        node = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            node = BinOp(self.take()[1], node, self.term())
        return node

    def term(self):
        node = self.atom()
        while self.peek() in (("op", "*"), ("op", "%")):
            node = BinOp(self.take()[1], node, self.atom())
        return node

    def atom(self):
        kind, v = self.take()
        if kind == "num":
            return Num(v)
        if kind == "name":
            if self.peek() == ("op", "("):
                self.take()
                args = [self.expr()]
                while self.peek() == ("op", ","):
                    self.take()
                    args.append(self.expr())
                self.expect(")")
                return Call(v, args)
            return Var(v)
        if v == "(":
            node = self.expr()
            self.expect(")")
            return node
        raise SyntaxError(v)


def gen_expr(rng, depth):
    r = rng.random()
    if depth == 0 or r < 0.2:
        return str(rng.randint(0, 99)) if rng.random() < 0.5 else rng.choice("xyz")
    if r < 0.35:
        return "%s(%s, %s)" % (rng.choice(["max", "min"]), gen_expr(rng, depth - 1),
                               gen_expr(rng, depth - 1))
    if r < 0.45:
        return "(%s)" % gen_expr(rng, depth - 1)
    return "%s %s %s" % (gen_expr(rng, depth - 1), rng.choice("+-*%"), gen_expr(rng, depth - 1))


def main():
    rng = random.Random(7)
    total = 0
    for _ in range(PROGRAMS):
        src = gen_expr(rng, 6)
        tree = Parser(tokenize(src)).expr()
        for x in range(8):
            total += tree.eval({"x": x, "y": x * 3, "z": 11 - x}) % 1000003
    return total


if __name__ == "__main__":
    import _timing
    _timing.run(main)
