"""A simplified rigid-body model of a 6-axis arm: joint motion → motor currents.

Enough physics to make the currents look and behave like a real arm's, not a full
Newton–Euler model:

- gravity on the shoulder (J2), elbow (J3) and wrist pitch (J5), from the pose and the payload;
- inertia × acceleration, with the base (J1) inertia growing with the reach and the shoulder
  inertia with the elbow angle; reflected rotor inertia dominates on the small wrist axes;
- Coulomb (smoothed with tanh) + viscous friction, scaled per sample by the thermal state and
  by any friction fault;
- current = joint torque / torque constant (joint side, gear ratio included).

Joint angles: J2 is the upper-arm elevation from horizontal, J3 the forearm angle relative to
the upper arm, J5 the wrist pitch relative to the forearm. Dimensions and masses are those of
a ~10 kg-payload industrial arm; they give shoulder/elbow currents of 5–20 A and wrist
currents 10–30× smaller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRAVITY = 9.81
FRICTION_SMOOTHING_RAD_S = 0.01  # tanh width of the Coulomb friction sign change


@dataclass(frozen=True)
class ArmParameters:
    upper_arm_m: float = 0.70
    forearm_m: float = 0.60
    tool_m: float = 0.06  # wrist centre → payload centre of mass
    upper_arm_kg: float = 10.0
    forearm_kg: float = 6.0
    wrist_kg: float = 2.0
    # Per joint J1..J6: base inertia incl. reflected rotor [kg m²], Coulomb [N m],
    # viscous [N m s/rad], torque constant at the joint [N m/A], rated current [A].
    inertia: tuple[float, ...] = (2.0, 2.5, 1.0, 0.08, 0.06, 0.03)
    coulomb: tuple[float, ...] = (12.0, 15.0, 8.0, 0.6, 0.5, 0.3)
    viscous: tuple[float, ...] = (6.0, 8.0, 4.0, 0.3, 0.3, 0.15)
    torque_constant: tuple[float, ...] = (8.0, 10.0, 5.0, 1.2, 2.5, 1.0)
    rated_current: tuple[float, ...] = (10.0, 20.0, 15.0, 2.0, 2.0, 1.5)
    noise_fraction: float = 0.002  # sensor noise σ as a fraction of rated current

    @property
    def rated(self) -> np.ndarray:
        return np.asarray(self.rated_current)


def joint_torques(
    params: ArmParameters,
    q: np.ndarray,
    qd: np.ndarray,
    qdd: np.ndarray,
    payload_kg: np.ndarray,
    friction_scale: np.ndarray,
) -> np.ndarray:
    """Joint torques (n, 6) [N m] for motion (n, 6), payload (n,), friction scale (n, 6)."""
    p = params
    l2, l3, lt = p.upper_arm_m, p.forearm_m, p.tool_m
    m2, m3 = p.upper_arm_kg, p.forearm_kg
    m_end = p.wrist_kg + payload_kg
    q2, q3, q5 = q[:, 1], q[:, 2], q[:, 4]
    c2 = np.cos(q2)
    c23 = np.cos(q2 + q3)
    c235 = np.cos(q2 + q3 + q5)
    c3 = np.cos(q3)

    tool_moment = payload_kg * lt * c235
    forearm_moment = (m3 * l3 / 2 + m_end * l3) * c23 + tool_moment
    gravity = np.zeros_like(q)
    gravity[:, 1] = GRAVITY * ((m2 * l2 / 2 + (m3 + m_end) * l2) * c2 + forearm_moment)
    gravity[:, 2] = GRAVITY * forearm_moment
    gravity[:, 4] = GRAVITY * tool_moment

    reach = l2 * c2 + l3 * c23
    wrist_dist_sq = l2 * l2 + l3 * l3 + 2 * l2 * l3 * c3
    inertia = np.empty_like(q)
    inertia[:] = p.inertia
    inertia[:, 0] += m2 * (l2 * c2 / 2) ** 2 + m3 * (l2 * c2 + l3 * c23 / 2) ** 2 + m_end * reach**2
    inertia[:, 1] += m2 * (l2 / 2) ** 2 + m3 * (l2 * l2 + l3 * l3 / 4 + l2 * l3 * c3)
    inertia[:, 1] += m_end * wrist_dist_sq
    inertia[:, 2] += m3 * (l3 / 2) ** 2 + m_end * l3 * l3
    inertia[:, 4] += payload_kg * lt * lt
    inertia[:, 5] += payload_kg * 0.002

    friction = np.asarray(p.coulomb) * np.tanh(qd / FRICTION_SMOOTHING_RAD_S)
    friction += np.asarray(p.viscous) * qd
    return gravity + inertia * qdd + friction * friction_scale


def motor_currents(params: ArmParameters, torques: np.ndarray) -> np.ndarray:
    """Joint torques → motor currents [A]."""
    return torques / np.asarray(params.torque_constant)
