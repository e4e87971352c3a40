//! Privacy Mode: fail-closed network lockdown and radio, camera and microphone kill switches.
