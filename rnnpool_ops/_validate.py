"""Checks of constructor and option arguments, one place for every layer, policy and builder.

Each raises TypeError for a value of the wrong type and ValueError for one out of range, naming the
argument. bool is never taken for a number, nor a str (MaxSoftmaxPolicy("0.9")) for a real.
"""

import math
from numbers import Integral, Real


def integer(name, value, minimum=None):
    """value as an int, at least `minimum` when given."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def integer_pair(name, value, minimum=None):
    """An int or 2 ints (height, width), each at least `minimum`, as a tuple."""
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, Integral) for v in pair):
        raise TypeError(f"{name} must be an int or 2 ints (height, width), got {value!r}")
    if minimum is not None and min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum} in both dimensions, got {value!r}")
    return tuple(int(v) for v in pair)


def real(name, value, low=-math.inf, high=math.inf, low_open=False, high_open=False, infinite=()):
    """value as a float in the interval low..high (open ends as given).

    NaN is never accepted; an infinity only where `infinite` lists it (say math.inf: "never").
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    if math.isinf(number) and number in infinite:
        return number
    inside = (math.isfinite(number) and (low < number if low_open else low <= number)
              and (number < high if high_open else number <= high))
    if not inside:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        extra = f" or {', '.join(map(str, infinite))}" if infinite else ""
        raise ValueError(f"{name} must be a finite number in {interval}{extra}, got {value!r}")
    return number



def flag(name, value):
    """value, a bool (an option's True/False; 0, 1 and "yes" are refused)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def shape(name, value, length=None):
    """A sample shape: a tuple of positive ints (`length` of them when given)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a tuple of ints, got {type(value).__name__} {value!r}")
    values = tuple(value)
    if not values or (length is not None and len(values) != length):
        raise ValueError(f"{name} must be {length or 'one or more'} ints, got {value!r}")
    return tuple(integer(f"{name}[{i}]", size, 1) for i, size in enumerate(values))
