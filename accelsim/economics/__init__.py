"""Silicon economics: what a chip and a system cost (wafer, yield, masks, design NRE, memory,
package, host, network, power) and when a single-model chip pays off against merchant chips.

``tables`` reads the sourced figures; ``silicon`` prices dies; ``system`` prices a simulated
system (capex, opex, $/Mtoken); ``tco`` adds NRE and respins and finds the breakeven.
"""
