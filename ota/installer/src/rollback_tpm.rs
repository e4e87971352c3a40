//! The rollback index in a TPM 2.0 NV index, for devices with a TPM.
//!
//! The index is an ordinary 8-byte NV space (big-endian u64) in the owner range, defined on
//! the first raise, readable and writable with owner authorization, no dictionary-attack
//! lockout. The store never writes a lower value, reads every write back, and fails closed: a
//! TPM that is present but does not answer is an error, never a silent fall-back to 0.
//!
//! Compared with the file store it survives a reflash of the root file system and the state
//! directory, and is out of reach of anything that can only write files. An attacker with the
//! owner authorization can still reset it; binding it to a boot-time lock (`TPMA_NV_WRITE_STCLEAR`
//! set by firmware) is the next step and needs the bootloader's cooperation.

use std::str::FromStr;

use tss_esapi::Context;
use tss_esapi::abstraction::nv;
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::NvIndexType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::structures::{MaxNvBuffer, NvPublicBuilder};
use tss_esapi::tcti_ldr::TctiNameConf;

use crate::{InstallError, RollbackStore};

/// The NV index Enigm OS keeps the rollback index in (owner range 0x01000000–0x013FFFFF).
pub const ROLLBACK_NV_INDEX: u32 = 0x0150_0e16;
const SIZE: usize = 8;

fn tpm_err(what: &str) -> impl FnOnce(tss_esapi::Error) -> InstallError + '_ {
    move |err| InstallError::Rollback(format!("TPM {what}: {err}"))
}

/// The rollback index in a TPM NV index.
pub struct TpmRollbackStore {
    context: Context,
    index: NvIndexTpmHandle,
}

impl std::fmt::Debug for TpmRollbackStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmRollbackStore")
            .field("index", &format!("{:#x}", u32::from(self.index)))
            .finish_non_exhaustive()
    }
}

impl TpmRollbackStore {
    /// The store in the TPM at `tcti` (e.g. `device:/dev/tpmrm0`), at [`ROLLBACK_NV_INDEX`].
    pub fn open(tcti: &str) -> Result<Self, InstallError> {
        Self::open_at(tcti, ROLLBACK_NV_INDEX)
    }

    /// The store in the TPM at `tcti`, at NV index `index`.
    pub fn open_at(tcti: &str, index: u32) -> Result<Self, InstallError> {
        let name = TctiNameConf::from_str(tcti).map_err(tpm_err("TCTI"))?;
        let context = Context::new(name).map_err(tpm_err("connection"))?;
        let index = NvIndexTpmHandle::new(index).map_err(tpm_err("NV index"))?;
        Ok(Self { context, index })
    }

    fn defined(&mut self) -> Result<bool, InstallError> {
        let index = self.index;
        let listed = nv::list(&mut self.context).map_err(tpm_err("listing NV indices"))?;
        Ok(listed.iter().any(|(public, _)| public.nv_index() == index))
    }

    /// Releases the ESYS object for `handle` (not the NV index).
    fn close(&mut self, handle: NvIndexHandle) {
        let mut object = ObjectHandle::from(handle);
        let _ = self.context.tr_close(&mut object);
    }

    fn handle(&mut self) -> Result<NvIndexHandle, InstallError> {
        let index = self.index;
        self.context
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(index.into()))
            .map(NvIndexHandle::from)
            .map_err(tpm_err("NV index handle"))
    }

    fn define(&mut self) -> Result<(), InstallError> {
        let attributes = NvIndexAttributesBuilder::new()
            .with_nv_index_type(NvIndexType::Ordinary)
            .with_owner_write(true)
            .with_owner_read(true)
            .with_no_da(true)
            .build()
            .map_err(tpm_err("NV attributes"))?;
        let public = NvPublicBuilder::new()
            .with_nv_index(self.index)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attributes)
            .with_data_area_size(SIZE)
            .build()
            .map_err(tpm_err("NV public area"))?;
        let handle = self
            .context
            .execute_with_nullauth_session(|ctx| {
                ctx.nv_define_space(Provision::Owner, None, public)
            })
            .map_err(tpm_err("defining the NV index"))?;
        self.close(handle);
        Ok(())
    }

    fn read(&mut self) -> Result<Option<u64>, InstallError> {
        if !self.defined()? {
            return Ok(None);
        }
        let handle = self.handle()?;
        let value = self.read_at(handle);
        self.close(handle);
        value
    }

    fn read_at(&mut self, handle: NvIndexHandle) -> Result<Option<u64>, InstallError> {
        let (public, _) = self
            .context
            .execute_without_session(|ctx| ctx.nv_read_public(handle))
            .map_err(tpm_err("reading the NV public area"))?;
        if !public.attributes().written() {
            return Ok(None);
        }
        if public.data_size() != SIZE {
            return Err(InstallError::Rollback(format!(
                "TPM NV index {:#x} holds {} bytes, not {SIZE}: not ours",
                u32::from(self.index),
                public.data_size()
            )));
        }
        let data = self
            .context
            .execute_with_nullauth_session(|ctx| ctx.nv_read(NvAuth::Owner, handle, SIZE as u16, 0))
            .map_err(tpm_err("reading the NV index"))?;
        let bytes: [u8; SIZE] = data
            .value()
            .try_into()
            .map_err(|_| InstallError::Rollback("TPM NV read returned a short value".into()))?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }
}

impl RollbackStore for TpmRollbackStore {
    fn get(&mut self) -> Result<u64, InstallError> {
        Ok(self.read()?.unwrap_or(0))
    }

    fn raise(&mut self, index: u64) -> Result<(), InstallError> {
        if !self.defined()? {
            self.define()?;
        } else if self.get()? >= index {
            return Ok(());
        }
        let data =
            MaxNvBuffer::try_from(index.to_be_bytes().to_vec()).map_err(tpm_err("NV buffer"))?;
        let handle = self.handle()?;
        let written = self
            .context
            .execute_with_nullauth_session(|ctx| ctx.nv_write(NvAuth::Owner, handle, data, 0))
            .map_err(tpm_err("writing the NV index"));
        self.close(handle);
        written?;
        let stored = self.get()?;
        if stored != index {
            return Err(InstallError::Rollback(format!(
                "TPM NV index reads {stored} after writing {index}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn the_store_can_move_to_the_engine_thread() {
        assert_send::<TpmRollbackStore>();
    }
}
