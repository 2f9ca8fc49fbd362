# The layout probe (runtime/src/ffi/layout/probe.rs): objects with known contents, made by
# the interpreter itself. Compiled and marshalled at build time by runtime/build.rs.
def plain(a, b, /, c, *, d, e=1):
    x = a
    return (x, "probe", 1.5)
def outer():
    y = 1
    def inner():
        return y
    return inner
code = plain.__code__
outer_code = outer.__code__
inner_code = [c for c in outer_code.co_consts if type(c) is type(code)][0]
strings = ("probe_ascii", "\xe9t\xe9", "\u20ac\u20ac", "\U0001f600x")
chars = [[ord(c) for c in s] for s in strings]
data = b"probe\x00bytes"
big = 2 ** 70 + 5
negative = -(2 ** 40)
number = 1.25
cplx = 1.5 + 2.5j
pair = (strings, data)
