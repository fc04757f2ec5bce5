"""Method-heavy object-oriented code: a small 2-D physics/geometry model with
inheritance, super(), properties, dunder methods and class methods.
"""
import math
import os

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
STEPS = max(1, int(1900 * SCALE))


class Vec:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __add__(self, other):
        return Vec(self.x + other.x, self.y + other.y)

    def __sub__(self, other):
        return Vec(self.x - other.x, self.y - other.y)

    def scale(self, k):
        return Vec(self.x * k, self.y * k)

    def dot(self, other):
        return self.x * other.x + self.y * other.y

    @property
    def norm(self):
        return math.sqrt(self.dot(self))


class Shape:
    def __init__(self, pos, vel):
        self.pos = pos
        self.vel = vel

    def area(self):
        raise NotImplementedError

    def step(self, dt):
        self.pos = self.pos + self.vel.scale(dt)
        self.bounce()

    def bounce(self):
        if not -100.0 < self.pos.x < 100.0:
            self.vel = Vec(-self.vel.x, self.vel.y)
        if not -100.0 < self.pos.y < 100.0:
            self.vel = Vec(self.vel.x, -self.vel.y)

    @classmethod
    def make(cls, i):
        return cls(Vec(i % 37 - 18.0, i % 23 - 11.0), Vec((i % 7) - 3.0, (i % 5) - 2.0))


class Circle(Shape):
    def __init__(self, pos, vel, r=1.5):
        super().__init__(pos, vel)
        self.r = r

    def area(self):
        return math.pi * self.r * self.r


class Rect(Shape):
    def __init__(self, pos, vel, w=2.0, h=1.0):
        super().__init__(pos, vel)
        self.w = w
        self.h = h

    def area(self):
        return self.w * self.h


class Square(Rect):
    def __init__(self, pos, vel):
        super().__init__(pos, vel, 1.5, 1.5)


class World:
    def __init__(self, n):
        kinds = (Circle, Rect, Square)
        self.shapes = [kinds[i % 3].make(i) for i in range(n)]

    def tick(self, dt):
        for s in self.shapes:
            s.step(dt)

    def energy(self):
        return sum(s.vel.dot(s.vel) * s.area() for s in self.shapes)

    def centroid(self):
        acc = Vec(0.0, 0.0)
        for s in self.shapes:
            acc = acc + s.pos
        return acc.scale(1.0 / len(self.shapes))


def main():
    world = World(300)
    e = 0.0
    for _ in range(STEPS):
        world.tick(0.1)
        e += world.energy()
    c = world.centroid()
    return round(e, 3), round(c.norm, 6)


if __name__ == "__main__":
    import _timing
    _timing.run(main)
